//! What `/metrics` reports, kept and written by `prometheus-client` (OpenMetrics text, which
//! Prometheus reads): requests by status class, bytes uploaded, tasks by status (counted from
//! the store at each scrape) and worker processes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::Status;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// The service's counters and gauges.
pub struct Metrics {
    registry: Registry,
    requests: Family<ClassLabel, Counter>,
    upload_bytes: Counter,
    tasks: Family<StatusLabel, Gauge>,
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    pub fn new(workers: usize) -> Metrics {
        let mut registry = Registry::default();
        let tasks = Family::<StatusLabel, Gauge>::default();
        registry.register("vsr_tasks", "Tasks by status", tasks.clone());
        let requests = Family::<ClassLabel, Counter>::default();
        registry.register(
            "vsr_http_requests",
            "HTTP requests by status class",
            requests.clone(),
        );
        let upload_bytes = Counter::default();
        registry.register(
            "vsr_upload_bytes",
            "Bytes of video uploaded",
            upload_bytes.clone(),
        );
        let worker_gauge = Gauge::<i64>::default();
        worker_gauge.set(workers as i64);
        registry.register("vsr_workers", "Worker processes", worker_gauge);
        Metrics {
            registry,
            requests,
            upload_bytes,
            tasks,
        }
    }

    /// Counts one answered request by its status class (1xx to 5xx).
    pub fn count_response(&self, status: u16) {
        const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let class = CLASSES[(status as usize / 100).clamp(1, 5) - 1];
        self.requests.get_or_create(&ClassLabel { class }).inc();
    }

    pub fn count_upload(&self, bytes: u64) {
        self.upload_bytes.inc_by(bytes);
    }

    /// The metrics as text, with the task counts `by_status` (every status listed, zeros too).
    pub fn encode(&self, by_status: &[(Status, i64)]) -> String {
        for &status in Status::ALL {
            let n = by_status
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |c| c.1);
            self.tasks
                .get_or_create(&StatusLabel {
                    status: status.as_str(),
                })
                .set(n);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_every_series() {
        let m = Metrics::new(2);
        m.count_response(200);
        m.count_response(404);
        m.count_upload(1000);
        let text = m.encode(&[(Status::Completed, 3)]);
        for line in [
            "vsr_tasks{status=\"completed\"} 3",
            "vsr_tasks{status=\"failed\"} 0",
            "vsr_http_requests_total{class=\"2xx\"} 1",
            "vsr_http_requests_total{class=\"4xx\"} 1",
            "vsr_upload_bytes_total 1000",
            "vsr_workers 2",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
