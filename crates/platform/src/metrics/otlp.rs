//! The same metrics pushed over OTLP: a `metrics` recorder that forwards each counter, gauge
//! and histogram to an OpenTelemetry instrument of the same name and labels, exported by the
//! SDK's periodic reader (every `OTEL_METRIC_EXPORT_INTERVAL` ms, 60 s by default) when an OTLP
//! endpoint is configured. It runs beside the Prometheus recorder (a fan-out): `/metrics` is
//! served either way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

/// Forwards to OpenTelemetry instruments, made once per metric name.
pub struct OtelRecorder {
    meter: Meter,
    descriptions: Mutex<HashMap<String, (String, Option<Unit>)>>,
    counters: Mutex<HashMap<String, opentelemetry::metrics::Counter<u64>>>,
    gauges: Mutex<HashMap<String, opentelemetry::metrics::Gauge<f64>>>,
    histograms: Mutex<HashMap<String, opentelemetry::metrics::Histogram<f64>>>,
    /// A gauge's current value per series (OpenTelemetry gauges are set, `metrics` ones may
    /// also be moved up and down).
    gauge_values: Mutex<HashMap<Key, Arc<AtomicU64>>>,
}

impl OtelRecorder {
    pub fn new(meter: Meter) -> Self {
        OtelRecorder {
            meter,
            descriptions: Mutex::default(),
            counters: Mutex::default(),
            gauges: Mutex::default(),
            histograms: Mutex::default(),
            gauge_values: Mutex::default(),
        }
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        lock(&self.descriptions).insert(key.as_str().to_owned(), (description.into_owned(), unit));
    }

    /// The instrument named `name` in `made`, made by `make(name, description, unit)` the first
    /// time (the `metrics` macros register on every use: a hit allocates nothing).
    fn instrument<T: Clone>(
        &self,
        made: &Mutex<HashMap<String, T>>,
        name: &str,
        make: impl FnOnce(String, String, &'static str) -> T,
    ) -> T {
        let mut made = lock(made);
        if let Some(instrument) = made.get(name) {
            return instrument.clone();
        }
        let (description, unit) = match lock(&self.descriptions).get(name) {
            Some((text, unit)) => (text.clone(), unit.map_or("", ucum)),
            None => (String::new(), ""),
        };
        let instrument = make(name.to_owned(), description, unit);
        made.insert(name.to_owned(), instrument.clone());
        instrument
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels().map(|label| KeyValue::new(label.key().to_owned(), label.value().to_owned())).collect()
}

/// A unit in the notation OpenTelemetry uses (UCUM).
fn ucum(unit: Unit) -> &'static str {
    match unit {
        Unit::Seconds => "s",
        Unit::Milliseconds => "ms",
        Unit::Bytes => "By",
        _ => "1",
    }
}

impl Recorder for OtelRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let instrument = self.instrument(&self.counters, key.name(), |name, description, unit| {
            self.meter.u64_counter(name).with_description(description).with_unit(unit).build()
        });
        Counter::from_arc(Arc::new(OtelCounter { instrument, attributes: attributes(key) }))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let instrument = self.instrument(&self.gauges, key.name(), |name, description, unit| {
            self.meter.f64_gauge(name).with_description(description).with_unit(unit).build()
        });
        let value = lock(&self.gauge_values).entry(key.clone()).or_default().clone();
        Gauge::from_arc(Arc::new(OtelGauge { instrument, attributes: attributes(key), value }))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let instrument = self.instrument(&self.histograms, key.name(), |name, description, unit| {
            self.meter.f64_histogram(name).with_description(description).with_unit(unit).build()
        });
        Histogram::from_arc(Arc::new(OtelHistogram { instrument, attributes: attributes(key) }))
    }
}

struct OtelCounter {
    instrument: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
}

impl CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.instrument.add(value, &self.attributes);
    }

    /// OpenTelemetry counters only add; an absolute value is not what our code records.
    fn absolute(&self, _: u64) {}
}

struct OtelGauge {
    instrument: opentelemetry::metrics::Gauge<f64>,
    attributes: Vec<KeyValue>,
    value: Arc<AtomicU64>,
}

impl OtelGauge {
    fn update(&self, change: impl Fn(f64) -> f64) {
        let mut current = self.value.load(Ordering::Relaxed);
        loop {
            let next = change(f64::from_bits(current));
            match self.value.compare_exchange_weak(
                current,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.instrument.record(next, &self.attributes);
                    return;
                }
                Err(seen) => current = seen,
            }
        }
    }
}

impl GaugeFn for OtelGauge {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

struct OtelHistogram {
    instrument: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.instrument.record(value, &self.attributes);
    }
}
