//! Everything `vsr serve` and its workers need, and where each value comes from.

use std::path::PathBuf;
use std::time::Duration;

/// Everything `vsr serve` and its workers need, from (lowest to highest precedence) defaults,
/// a TOML file (`--config` or `VSR_CONFIG`), environment variables (the seed's names where it
/// has one) and flags. `vsr serve --print-config` shows the result.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    pub host: String,
    pub port: u16,
    /// Worker processes, each running one job at a time.
    pub workers: usize,
    /// Inference threads per worker (0 = the cores shared out among the workers).
    pub threads: usize,
    /// Seconds of source per segment, the unit of resuming and of sharing one video between
    /// workers (`VSR_SEGMENT_SECONDS`; 0 = the whole video is one segment).
    pub segment_seconds: f64,
    /// Instruction set for the CPU kernels (`VSR_ISA`: avx512, avx2, portable); the best the
    /// CPU has when unset.
    #[serde(with = "isa_text")]
    pub isa: Option<vsr_runtime::IsaLevel>,
    /// Log each layer's time in the workers (`VSR_PROFILE`).
    pub profile: bool,
    /// Winograd tiles per block instead of the default (`VSR_WINO_TILES`, for tuning).
    pub winograd_tiles: Option<usize>,
    /// Uploaded videos (seed: `UPLOAD_FOLDER`).
    pub upload_folder: PathBuf,
    /// Finished videos (seed: `PROCESSED_FOLDER`).
    pub processed_folder: PathBuf,
    /// The database holding tasks and the job queue (`VSR_DATABASE`): a SQLite file (the
    /// embedded default), or `postgres://user:password@host:port/database` for a database
    /// several machines share.
    pub database: Database,
    /// Where uploads and results are kept: unset, the two folders above (on this machine or
    /// a mount every machine shares); or an S3-compatible object store (`VSR_STORAGE=
    /// s3://bucket/prefix`, `[storage]` in TOML), with the folders as this machine's copies.
    pub storage: Option<crate::storage::S3Config>,
    /// Largest upload in bytes (seed: `MAX_CONTENT_LENGTH`).
    pub max_content_length: u64,
    /// Free disk space to keep beyond an upload and its expected output, in bytes.
    pub min_free_disk: u64,
    /// How long uploads and results are kept, in seconds.
    pub retention_seconds: u64,
    /// How often expired files are swept, in seconds.
    pub sweep_interval_seconds: u64,
    /// How long a worker's claim on a task holds without a progress report
    /// (`VSR_LEASE_SECONDS`): a worker that vanishes loses its task after this.
    pub lease_seconds: u64,
    /// Tasks waiting beyond this many make uploads fail with 429.
    pub max_queued: u64,
    /// Signs expiring download links (seed: `SECRET_KEY`); random per start when unset.
    pub secret_key: Option<String>,
    /// When non-empty, every endpoint but health needs one of these keys.
    pub api_keys: Vec<String>,
    /// Largest output frame, (width, height).
    pub max_output: (u64, u64),
    /// Limits on accepted videos.
    pub limits: vsr_media::video::Limits,
    /// Log one JSON object per line instead of text.
    pub log_json: bool,
    /// Where workers run models (`VSR_DEVICE`): auto, cpu, cuda or cuda:N for every worker;
    /// `cuda:all` or a list (`cuda:0,1`) for one worker per GPU (more if `workers` says so).
    #[serde(with = "device_text")]
    pub device: vsr_cuda::DeviceSet,
    /// The `vsr` executable worker processes run (`vsr worker`); this process's own when
    /// unset. Set by whoever embeds the service (the tests, which run it in-process).
    #[serde(skip)]
    pub worker_program: Option<PathBuf>,
    /// When set, `/metrics` needs this key (`Authorization: Bearer KEY`); API keys never
    /// grant it. Unset, `/metrics` is open on a server without API keys and refused on one
    /// with them, so one client never sees another's figures.
    pub metrics_key: Option<String>,
    /// Names clients may reach the server by (the `Host` header), `*` for any. Empty: only
    /// loopback names when listening on loopback (so a web page that rebinds its own name to
    /// 127.0.0.1 is refused), any name otherwise.
    pub allowed_hosts: Vec<String>,
    /// Serve the web page's files from this folder, read at each request (development;
    /// `VSR_WEB_DIR`); the embedded copies otherwise.
    pub web_dir: Option<PathBuf>,
    /// Limits on connections and request bodies; see docs/security.md.
    pub http: HttpLimits,
}

/// How long and how many: the limits that keep slow or greedy clients from holding the
/// server. Every value is in docs/security.md with its reason.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// A request's head (line and headers) must arrive within this; an idle keep-alive
    /// connection is closed after it too.
    pub header_timeout_seconds: u64,
    /// The longest pause allowed inside any request body.
    pub body_idle_timeout_seconds: u64,
    /// A JSON body (start, preview) must arrive whole within this.
    pub json_body_timeout_seconds: u64,
    /// An upload must arrive whole within this, however steadily it trickles.
    pub upload_timeout_seconds: u64,
    /// Uploads received at once; more are answered 503 `server_busy` at once.
    pub max_concurrent_uploads: usize,
    /// FFmpeg probes and frame grabs (uploads, previews, result frames) run at once.
    pub max_concurrent_probes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout_seconds: 10,
            body_idle_timeout_seconds: 30,
            json_body_timeout_seconds: 10,
            upload_timeout_seconds: 3600,
            max_concurrent_uploads: 8,
            max_concurrent_probes: 4,
        }
    }
}

impl HttpLimits {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_seconds.max(1))
    }

    pub fn body_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.body_idle_timeout_seconds.max(1))
    }

    pub fn json_body_timeout(&self) -> Duration {
        Duration::from_secs(self.json_body_timeout_seconds.max(1))
    }

    pub fn upload_timeout(&self) -> Duration {
        Duration::from_secs(self.upload_timeout_seconds.max(1))
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        let data = PathBuf::from("vsr-data");
        ServiceConfig {
            host: "127.0.0.1".into(),
            port: 5000,
            workers: 1,
            threads: 0,
            segment_seconds: vsr_media::video::segment::DEFAULT_SECONDS,
            isa: None,
            profile: false,
            winograd_tiles: None,
            upload_folder: data.join("uploads"),
            processed_folder: data.join("processed"),
            database: Database::Sqlite(data.join("vsr.db")),
            storage: None,
            max_content_length: 100 * 1024 * 1024,
            min_free_disk: 256 * 1024 * 1024,
            retention_seconds: 24 * 3600,
            sweep_interval_seconds: 60,
            lease_seconds: crate::store::LEASE_SECONDS,
            max_queued: 100,
            secret_key: None,
            api_keys: Vec::new(),
            max_output: (7680, 4320),
            limits: vsr_media::video::Limits::default(),
            log_json: false,
            device: vsr_cuda::DeviceSet::default(),
            worker_program: None,
            metrics_key: None,
            allowed_hosts: Vec::new(),
            web_dir: None,
            http: HttpLimits::default(),
        }
    }
}

/// Where tasks are stored: written as a path or a `postgres://` URL in TOML, JSON and
/// `VSR_DATABASE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file on this machine.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl std::str::FromStr for Database {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Database, Self::Err> {
        Ok(
            if s.starts_with("postgres://") || s.starts_with("postgresql://") {
                Database::Postgres(s.to_string())
            } else {
                Database::Sqlite(PathBuf::from(s))
            },
        )
    }
}

impl Database {
    /// The text it was given as (with any password).
    pub fn as_text(&self) -> String {
        match self {
            Database::Sqlite(p) => p.display().to_string(),
            Database::Postgres(url) => url.clone(),
        }
    }
}

/// For logs and errors: a PostgreSQL URL's password is left out.
impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                match rest.split_once('@') {
                    Some((user, host)) => {
                        let user = user.split(':').next().unwrap_or("");
                        write!(f, "{scheme}://{user}:***@{host}")
                    }
                    None => f.write_str(url),
                }
            }
        }
    }
}

impl serde::Serialize for Database {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_text())
    }
}

impl<'de> serde::Deserialize<'de> for Database {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Database, D::Error> {
        let text = String::deserialize(d)?;
        Ok(text.parse().unwrap_or_else(|never| match never {}))
    }
}

/// The instruction set as its name in TOML and JSON; absent or `auto` for the best.
mod isa_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use vsr_runtime::IsaLevel;

    pub fn serialize<S: Serializer>(isa: &Option<IsaLevel>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(isa.map_or("auto", IsaLevel::name))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IsaLevel>, D::Error> {
        match String::deserialize(d)?.as_str() {
            "auto" => Ok(None),
            name => name.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// The devices as their text (`auto`, `cpu`, `cuda:N`, `cuda:all`, `cuda:0,1`) in TOML and JSON.
mod device_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use vsr_cuda::DeviceSet;

    pub fn serialize<S: Serializer>(d: &DeviceSet, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceSet, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0}: {1}")]
    File(PathBuf, String),
    #[error("environment variable {0}: {1}")]
    Env(&'static str, String),
}

impl ServiceConfig {
    /// The one device a worker process runs on. A set of GPUs is `vsr serve`'s to place one
    /// worker on each; a worker started on its own runs on one (`VSR_DEVICE=cuda:N`).
    pub fn worker_device(&self) -> Result<vsr_cuda::DeviceRequest, ConfigError> {
        self.device.single().ok_or_else(|| {
            ConfigError::Env(
                "VSR_DEVICE",
                format!(
                    "{}: a worker runs on one device; start one `vsr worker` per GPU with VSR_DEVICE=cuda:N, or let `vsr serve` place one on each",
                    self.device
                ),
            )
        })
    }

    /// How the workers and previews run models: this config's threads, ISA and tuning.
    pub fn run_options(&self) -> Result<vsr_runtime::Options, vsr_runtime::UnsupportedIsa> {
        Ok(vsr_runtime::Options {
            isa: match self.isa {
                Some(level) => vsr_runtime::Isa::new(level)?,
                None => vsr_runtime::Isa::detect(),
            },
            threads: self.threads_per_worker(),
            tuning: vsr_runtime::Tuning {
                profile: self.profile,
                winograd_tiles: self.winograd_tiles,
            },
            ..Default::default()
        })
    }

    /// Inference threads for each worker: as configured, or the cores shared out among the
    /// workers (one worker gets them all), since every worker may be busy with one long video.
    pub fn threads_per_worker(&self) -> usize {
        match self.threads {
            0 if self.workers > 1 => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cores / self.workers).max(1)
            }
            n => n,
        }
    }

    /// Until when (ms) a claim or a progress report made now holds the task.
    pub fn lease_from_now(&self) -> i64 {
        crate::store::now_ms() + 1000 * self.lease_seconds.max(1) as i64
    }

    /// Seconds per segment; `None` when the whole video is one segment.
    pub fn segment_seconds(&self) -> Option<f64> {
        (self.segment_seconds.is_finite() && self.segment_seconds > 0.0)
            .then_some(self.segment_seconds)
    }

    /// When files of a task that ends now are swept: the one retention rule.
    pub fn expiry_from_now(&self) -> i64 {
        crate::store::now_ms() + self.retention_seconds as i64 * 1000
    }

    /// Defaults, then the TOML file, then the environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<ServiceConfig, ConfigError> {
        let file = file
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("VSR_CONFIG").map(PathBuf::from));
        let mut config = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::File(path.clone(), e.to_string()))?;
                toml::from_str(&text).map_err(|e| ConfigError::File(path.clone(), e.to_string()))?
            }
            None => ServiceConfig::default(),
        };
        config.apply_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))?;
        Ok(config)
    }

    /// Applies the environment variables `get` returns (the process environment in `load`).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        // `slot` takes the variable's value, parsed, when it is set.
        fn set<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            key: &'static str,
            slot: &mut T,
        ) -> Result<(), ConfigError> {
            if let Some(v) = get(key) {
                *slot = v
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError::Env(key, format!("cannot parse {v:?}")))?;
            }
            Ok(())
        }
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect()
        };
        set(&get, "VSR_HOST", &mut self.host)?;
        set(&get, "VSR_PORT", &mut self.port)?;
        set(&get, "VSR_WORKERS", &mut self.workers)?;
        set(&get, "VSR_THREADS", &mut self.threads)?;
        set(&get, "VSR_SEGMENT_SECONDS", &mut self.segment_seconds)?;
        set(&get, "UPLOAD_FOLDER", &mut self.upload_folder)?;
        set(&get, "PROCESSED_FOLDER", &mut self.processed_folder)?;
        set(&get, "VSR_DATABASE", &mut self.database)?;
        set(&get, "MAX_CONTENT_LENGTH", &mut self.max_content_length)?;
        set(&get, "VSR_RETENTION_SECONDS", &mut self.retention_seconds)?;
        set(
            &get,
            "VSR_SWEEP_INTERVAL_SECONDS",
            &mut self.sweep_interval_seconds,
        )?;
        set(&get, "VSR_MAX_QUEUED", &mut self.max_queued)?;
        set(&get, "VSR_LEASE_SECONDS", &mut self.lease_seconds)?;
        set(&get, "VSR_DEVICE", &mut self.device)?;
        if let Some(v) = get("VSR_ISA") {
            self.isa = match v.trim() {
                "auto" => None,
                name => Some(
                    name.parse()
                        .map_err(|e: String| ConfigError::Env("VSR_ISA", e))?,
                ),
            };
        }
        self.profile |= get("VSR_PROFILE").is_some();
        if let Some(v) = get("VSR_WINO_TILES") {
            self.winograd_tiles =
                Some(v.trim().parse().map_err(|_| {
                    ConfigError::Env("VSR_WINO_TILES", format!("cannot parse {v:?}"))
                })?);
        }
        let http = &mut self.http;
        set(
            &get,
            "VSR_HEADER_TIMEOUT_SECONDS",
            &mut http.header_timeout_seconds,
        )?;
        set(
            &get,
            "VSR_BODY_IDLE_TIMEOUT_SECONDS",
            &mut http.body_idle_timeout_seconds,
        )?;
        set(
            &get,
            "VSR_JSON_BODY_TIMEOUT_SECONDS",
            &mut http.json_body_timeout_seconds,
        )?;
        set(
            &get,
            "VSR_UPLOAD_TIMEOUT_SECONDS",
            &mut http.upload_timeout_seconds,
        )?;
        set(
            &get,
            "VSR_MAX_CONCURRENT_UPLOADS",
            &mut http.max_concurrent_uploads,
        )?;
        set(
            &get,
            "VSR_MAX_CONCURRENT_PROBES",
            &mut http.max_concurrent_probes,
        )?;
        self.apply_storage_env(&get)?;
        if let Some(v) = get("SECRET_KEY") {
            self.secret_key = Some(v);
        }
        if let Some(v) = get("VSR_METRICS_KEY") {
            self.metrics_key = Some(v);
        }
        if let Some(v) = get("VSR_WEB_DIR") {
            self.web_dir = Some(v.into());
        }
        if let Some(v) = get("VSR_API_KEYS") {
            self.api_keys = list(v);
        }
        if let Some(v) = get("VSR_ALLOWED_HOSTS") {
            self.allowed_hosts = list(v);
        }
        if let Some(v) = get("VSR_LOG_JSON") {
            self.log_json = matches!(v.as_str(), "1" | "true" | "yes");
        }
        Ok(())
    }

    /// `VSR_STORAGE` (`s3://bucket/prefix`, or `folders`), then the object store's
    /// `VSR_S3_ENDPOINT`, `VSR_S3_REGION`, `VSR_S3_RETRY_SECONDS`, `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    fn apply_storage_env(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = get("VSR_STORAGE") {
            self.set_storage(&v)
                .map_err(|e| ConfigError::Env("VSR_STORAGE", e))?;
        }
        let Some(s3) = &mut self.storage else {
            return Ok(());
        };
        if let Some(v) = get("VSR_S3_ENDPOINT") {
            s3.endpoint = Some(v.trim().to_string());
        }
        if let Some(v) = get("VSR_S3_REGION") {
            s3.region = v.trim().to_string();
        }
        if let Some(v) = get("AWS_ACCESS_KEY_ID") {
            s3.access_key_id = Some(v.trim().to_string());
        }
        if let Some(v) = get("AWS_SECRET_ACCESS_KEY") {
            s3.secret_access_key = Some(v.trim().to_string());
        }
        if let Some(v) = get("VSR_S3_RETRY_SECONDS") {
            s3.retry_seconds = v.trim().parse().map_err(|_| {
                ConfigError::Env("VSR_S3_RETRY_SECONDS", format!("cannot parse {v:?}"))
            })?;
        }
        Ok(())
    }

    /// Storage as `vsr worker --storage` and `VSR_STORAGE` name it: `folders`, or
    /// `s3://bucket/prefix` (keeping the endpoint and keys already configured).
    pub fn set_storage(&mut self, url: &str) -> Result<(), String> {
        self.storage = match url.trim() {
            "folders" => None,
            url => {
                let named = crate::storage::S3Config::from_url(url)
                    .ok_or_else(|| format!("{url:?} is neither s3://bucket/prefix nor folders"))?;
                let known = self.storage.take().unwrap_or_default();
                Some(crate::storage::S3Config {
                    bucket: named.bucket,
                    prefix: named.prefix,
                    ..known
                })
            }
        };
        Ok(())
    }

    /// The effective values as TOML, secrets masked.
    pub fn to_toml_masked(&self) -> String {
        let mut shown = self.clone();
        shown.secret_key = shown.secret_key.as_ref().map(|_| "(set)".into());
        shown.api_keys = shown.api_keys.iter().map(|_| "(set)".into()).collect();
        shown.metrics_key = shown.metrics_key.as_ref().map(|_| "(set)".into());
        if let Some(s3) = &mut shown.storage {
            s3.secret_access_key = s3.secret_access_key.as_ref().map(|_| "(set)".into());
        }
        toml::to_string_pretty(&shown).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_seed_names_work() {
        let mut c: ServiceConfig = toml::from_str("port = 6000\nworkers = 3").unwrap();
        assert_eq!(
            (c.port, c.workers, c.max_content_length),
            (6000, 3, 100 << 20)
        );
        let env = [
            ("MAX_CONTENT_LENGTH", "1000"),
            ("UPLOAD_FOLDER", "/u"),
            ("VSR_PORT", "7000"),
            ("VSR_API_KEYS", "a, b,"),
            ("VSR_UPLOAD_TIMEOUT_SECONDS", "7"),
            ("VSR_MAX_CONCURRENT_UPLOADS", "2"),
        ];
        c.apply_env(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        assert_eq!((c.port, c.max_content_length), (7000, 1000));
        assert_eq!(c.upload_folder, PathBuf::from("/u"));
        assert_eq!(c.api_keys, ["a", "b"]);
        assert_eq!(
            (c.http.upload_timeout_seconds, c.http.max_concurrent_uploads),
            (7, 2)
        );
        let file: ServiceConfig =
            toml::from_str("[http]\nheader_timeout_seconds = 3\nmax_concurrent_probes = 1")
                .unwrap();
        assert_eq!(
            (file.http.header_timeout(), file.http.max_concurrent_probes),
            (Duration::from_secs(3), 1)
        );
        c.apply_env(|k| match k {
            "VSR_STORAGE" => Some("s3://media/vsr/".into()),
            "VSR_S3_ENDPOINT" => Some("http://127.0.0.1:9000".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("hidden".into()),
            _ => None,
        })
        .unwrap();
        let s3 = c.storage.clone().unwrap();
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("media", "vsr"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(!c.to_toml_masked().contains("hidden"));
        let bad = c.apply_env(|k| (k == "VSR_STORAGE").then(|| "ftp://x".to_string()));
        assert!(matches!(bad, Err(ConfigError::Env("VSR_STORAGE", _))));
        let bad = c.apply_env(|k| (k == "VSR_PORT").then(|| "x".to_string()));
        assert!(matches!(bad, Err(ConfigError::Env("VSR_PORT", _))));
        assert!(toml::from_str::<ServiceConfig>("prot = 1").is_err());
        assert!(!c.to_toml_masked().contains("\"a\""));
    }
}
