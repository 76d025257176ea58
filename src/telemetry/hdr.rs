//! Local latency percentiles: every duration the core records also goes into an HDR histogram
//! per (metric, request model). OTLP has no HDR type, so these serve the Python stats API and the
//! optional summary table at exit; the exported histograms use the semconv buckets.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::metric_table::{Metric, METRICS};

/// 1 µs to 1 h at 3 significant digits: about 184 KiB per histogram, allocated once.
const LOWEST_MICROS: u64 = 1;
const HIGHEST_MICROS: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

#[derive(Clone, Debug, PartialEq)]
pub struct Percentiles {
    pub metric: &'static str,
    pub model: String,
    pub count: u64,
    /// Seconds.
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// One model's histograms, indexed by `Metric as usize`: each made on its metric's first sample.
#[derive(Default)]
pub struct ModelLatencies {
    histograms: [Option<Histogram<u64>>; METRICS.len()],
}

impl ModelLatencies {
    pub fn record(&mut self, metric: Metric, seconds: f64) {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return;
        }
        let micros = ((seconds * 1e6).round() as u64).clamp(LOWEST_MICROS, HIGHEST_MICROS);
        self.histograms[metric as usize]
            .get_or_insert_with(|| {
                Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)
                    .expect("valid HDR bounds")
            })
            .saturating_record(micros);
    }
}

/// Keyed by model, then indexed by metric. The recorder records every sample of a batch of
/// requests (one model) after one lookup of the model: with a map of metric names per model, the
/// lookups and name comparisons cost the recorder thread more than the histograms' own work.
#[derive(Default)]
pub struct LatencyStore {
    histograms: BTreeMap<String, ModelLatencies>,
}

impl LatencyStore {
    /// The histograms of `model`; a lookup borrows the name (no key allocated per batch).
    pub fn model(&mut self, model: &str) -> &mut ModelLatencies {
        // Looked up before inserting so the common path allocates no key.
        if !self.histograms.contains_key(model) {
            self.histograms
                .insert(model.to_string(), ModelLatencies::default());
        }
        self.histograms.get_mut(model).expect("inserted above")
    }

    #[cfg(test)]
    pub fn record(&mut self, metric: Metric, model: &str, seconds: f64) {
        self.model(model).record(metric, seconds);
    }

    pub fn percentiles(&self) -> Vec<Percentiles> {
        let seconds = |micros: u64| micros as f64 / 1e6;
        let mut rows: Vec<Percentiles> = self
            .histograms
            .iter()
            .flat_map(|(model, per_model)| {
                per_model
                    .histograms
                    .iter()
                    .zip(&METRICS)
                    .filter_map(move |(h, spec)| h.as_ref().map(|h| (spec.name, model, h)))
            })
            .map(|(metric, model, h)| Percentiles {
                metric,
                model: model.clone(),
                count: h.len(),
                // The middle of each HDR bucket, not its upper edge.
                p50: seconds(h.median_equivalent(h.value_at_quantile(0.5))),
                p90: seconds(h.median_equivalent(h.value_at_quantile(0.9))),
                p99: seconds(h.median_equivalent(h.value_at_quantile(0.99))),
                p999: seconds(h.median_equivalent(h.value_at_quantile(0.999))),
                max: seconds(h.median_equivalent(h.max())),
            })
            .collect();
        // Ordered by (metric, model), as the Python stats API has always listed them.
        rows.sort_by(|a, b| (a.metric, &a.model).cmp(&(b.metric, &b.model)));
        rows
    }
}

/// A fixed-width text table of the percentiles, in milliseconds.
pub fn summary_table(rows: &[Percentiles]) -> String {
    let mut out = format!(
        "{:<36} {:<24} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "metric", "model", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for r in rows {
        let model: String = r.model.chars().take(24).collect();
        out.push_str(&format!(
            "{:<36} {:<24} {:>9} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}\n",
            r.metric,
            model,
            r.count,
            r.p50 * 1e3,
            r.p90 * 1e3,
            r.p99 * 1e3,
            r.p999 * 1e3,
            r.max * 1e3
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_per_metric_and_model() {
        let mut store = LatencyStore::default();
        for ms in 1..=1000 {
            store.record(Metric::Ttft, "a", ms as f64 / 1000.0);
        }
        store.record(Metric::Ttft, "b", 2.0);
        store.record(Metric::Ttft, "b", f64::NAN);
        store.record(Metric::Ttft, "b", -1.0);
        let rows = store.percentiles();
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!(
            (a.metric, a.model.as_str(), a.count),
            (crate::telemetry::semconv::METRIC_TTFT, "a", 1000)
        );
        // 3 significant digits: within 0.1% of the exact order statistic.
        assert!((a.p50 - 0.500).abs() < 0.0006, "{}", a.p50);
        assert!((a.p90 - 0.900).abs() < 0.001, "{}", a.p90);
        assert!((a.p99 - 0.990).abs() < 0.001, "{}", a.p99);
        assert!((a.p999 - 0.999).abs() < 0.001, "{}", a.p999);
        assert!((a.max - 1.0).abs() < 0.001);
        assert_eq!(rows[1].count, 1, "NaN and negative values are not recorded");
        let table = summary_table(&rows);
        assert!(table.lines().count() == 3 && table.contains("p99.9 ms"));
    }

    #[test]
    fn extreme_values_saturate_instead_of_failing() {
        let mut store = LatencyStore::default();
        store.record(Metric::RequestDuration, "m", 0.0);
        store.record(Metric::RequestDuration, "m", 1e9);
        let r = &store.percentiles()[0];
        assert_eq!(r.count, 2);
        assert!(r.max >= 3599.0);
    }
}
