//! Video and images through the models: which model (catalog, fetching, settings and their
//! recipes, model references), the enhancer that runs a recipe, and the video path
//! (probe -> decode -> pipeline -> encode) through FFmpeg. Used by the `vsr` command line and
//! by the service's workers alike; it reads no environment variable but in `Config::load`.

pub mod catalog;
pub mod code;
pub mod config;
pub mod enhance;
pub mod fetch;
pub mod image;
pub mod inspect;
pub mod model_pack;
pub mod model_ref;
pub mod picture;
pub mod resample;
pub mod settings;
pub mod subprocess;
pub mod temporal;
pub mod video;
