//! How many requests each Kafka client sends the broker, from librdkafka's own statistics, as metrics.
//!
//! The development broker's CPU is the largest share of a command's cost (docs/PERFORMANCE.md), and what the
//! service controls of it is how many produce and fetch requests it sends per command. librdkafka counts
//! every request it sends per broker and type; every client of the service asks for those statistics once
//! a second ([`STATS_INTERVAL_MS`]) and this module sums them over the brokers into
//! `kafka_requests_total{client, request}` (`request` is librdkafka's fixed name of the request type:
//! `Produce`, `Fetch`, `Metadata`, ...), which `/metrics` of the api and the workers serve and
//! `concert-bench` divides by the commands of a phase.

use std::collections::BTreeMap;

use rdkafka::consumer::ConsumerContext;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, ClientContext, Statistics};

/// `statistics.interval.ms` of every client: often enough for a bench phase of a few seconds, rare enough
/// that building and reading the statistics costs nothing measurable.
pub const STATS_INTERVAL_MS: u32 = 1_000;

/// A producer whose requests are counted.
pub type Producer = FutureProducer<Counted>;

/// A client context that turns librdkafka's statistics into request counters named after `client`.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    /// The `client` label: which client of which process, e.g. `api.commands`.
    pub client: &'static str,
}

impl Counted {
    pub const fn new(client: &'static str) -> Self {
        Self { client }
    }
}

impl ClientContext for Counted {
    fn stats(&self, statistics: Statistics) {
        record_requests(self.client, &statistics);
    }
}

impl ConsumerContext for Counted {}

/// Asks librdkafka for statistics (see [`STATS_INTERVAL_MS`]).
pub fn enable(config: &mut ClientConfig) -> &mut ClientConfig {
    config.set("statistics.interval.ms", STATS_INTERVAL_MS.to_string())
}

/// Sets `kafka_requests_total{client, request}` to the requests of each type `client` has sent to all
/// brokers so far (librdkafka's counts are totals since the client started).
pub fn record_requests(client: &'static str, statistics: &Statistics) {
    for (request, sent) in requests_by_type(statistics) {
        metrics::counter!("kafka_requests_total", "client" => client, "request" => request)
            .absolute(sent);
    }
}

/// The requests sent, by type, summed over the brokers; types never sent are left out.
fn requests_by_type(statistics: &Statistics) -> BTreeMap<String, u64> {
    let mut by_type = BTreeMap::new();
    for broker in statistics.brokers.values() {
        for (request, &sent) in &broker.req {
            if sent > 0 {
                *by_type.entry(request.clone()).or_default() += sent as u64;
            }
        }
    }
    by_type
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_summed_over_brokers_and_unsent_types_left_out() {
        let statistics: Statistics = serde_json::from_value(serde_json::json!({
            "name": "c", "client_id": "c", "type": "producer", "ts": 0, "time": 0, "age": 0,
            "replyq": 0, "msg_cnt": 0, "msg_size": 0, "msg_max": 0, "msg_size_max": 0,
            "simple_cnt": 0, "metadata_cache_cnt": 0,
            "tx": 0, "tx_bytes": 0, "rx": 0, "rx_bytes": 0, "txmsgs": 0, "txmsg_bytes": 0,
            "rxmsgs": 0, "rxmsg_bytes": 0,
            "brokers": {
                "a": broker("a", serde_json::json!({"Produce": 7, "Fetch": 0, "Metadata": 2})),
                "b": broker("b", serde_json::json!({"Produce": 3})),
            },
            "topics": {},
        }))
        .expect("statistics");
        let by_type = requests_by_type(&statistics);
        assert_eq!(by_type.get("Produce"), Some(&10));
        assert_eq!(by_type.get("Metadata"), Some(&2));
        assert_eq!(by_type.get("Fetch"), None);
    }

    fn broker(name: &str, req: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "name": name, "nodeid": 1, "nodename": name, "source": "configured", "state": "UP",
            "stateage": 0, "outbuf_cnt": 0, "outbuf_msg_cnt": 0, "waitresp_cnt": 0,
            "waitresp_msg_cnt": 0, "tx": 0, "txbytes": 0, "txerrs": 0, "txretries": 0,
            "txidle": 0, "req_timeouts": 0, "rx": 0, "rxbytes": 0, "rxerrs": 0,
            "rxcorriderrs": 0, "rxpartial": 0, "rxidle": 0, "zbuf_grow": 0, "buf_grow": 0,
            "wakeups": 0, "connects": 0, "disconnects": 0, "req": req, "toppars": {},
        })
    }
}
