//! Kafka requests per operation: how many produce and fetch requests the service's clients sent the broker
//! for each command of a phase (issue 17: the broker's cost follows them, and they are what the service
//! controls of it).
//!
//! The api and the workers publish librdkafka's own counts as `kafka_requests_total{client, request}` on
//! `/metrics` (`concert_core::kafka_stats`, updated once a second). `./dev bench` names those endpoints in
//! `BENCH_METRICS` (`api=URL,worker-1=URL,...`); a background task reads them every 500 ms into a timeline,
//! and a phase's figure is the difference between the samples nearest its start and its end, divided by its
//! operations. librdkafka updates its counts once a second, so a figure is good to about a second's requests
//! out of the phase's: read the 10-second phases of a full run, not `--quick`'s 3-second ones, for decisions.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often the endpoints are read.
const EVERY: Duration = Duration::from_millis(500);
/// Samples kept: the last two hours.
const KEEP: usize = 2 * 3600 * 2;

/// Requests sent so far, by `process/request` (e.g. `api/Produce`).
type Totals = BTreeMap<String, f64>;

static TIMELINE: OnceLock<Mutex<VecDeque<(Instant, Totals)>>> = OnceLock::new();

/// The endpoints named in `BENCH_METRICS`; entries that do not parse are left out.
pub fn sources_from_env() -> Vec<(String, String)> {
    std::env::var("BENCH_METRICS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|entry| {
            let (name, url) = entry.split_once('=')?;
            (!name.is_empty() && url.starts_with("http")).then(|| (name.to_owned(), url.to_owned()))
        })
        .collect()
}

/// Starts reading `sources` in the background (once; nothing to do without sources).
pub fn start(sources: Vec<(String, String)>) {
    if sources.is_empty() || TIMELINE.get().is_some() {
        return;
    }
    let timeline = TIMELINE.get_or_init(|| Mutex::new(VecDeque::new()));
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        loop {
            let mut totals = Totals::new();
            for (process, url) in &sources {
                let Ok(response) = client.get(url).timeout(Duration::from_secs(2)).send().await
                else {
                    continue;
                };
                let Ok(text) = response.text().await else {
                    continue;
                };
                for (request, sent) in parse(&text) {
                    *totals.entry(format!("{process}/{request}")).or_default() += sent;
                }
            }
            {
                let mut samples = timeline.lock().expect("kafka request timeline");
                if samples.len() >= KEEP {
                    samples.pop_front();
                }
                samples.push_back((Instant::now(), totals));
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}

/// Requests per operation between `start` and `end` for `sent` operations: per `process/request`, and summed
/// over the processes as `produce` and `fetch`. Empty when nothing is measured.
pub fn per_op(start: Instant, end: Instant, sent: u64) -> BTreeMap<String, f64> {
    let Some(timeline) = TIMELINE.get() else {
        return BTreeMap::new();
    };
    let samples = timeline.lock().expect("kafka request timeline");
    let nearest = |at: Instant| {
        samples
            .iter()
            .min_by_key(|(t, _)| if *t > at { *t - at } else { at - *t })
            .map(|(_, totals)| totals.clone())
    };
    match (sent, nearest(start), nearest(end)) {
        (1.., Some(a), Some(b)) => per_op_of(&a, &b, sent),
        _ => BTreeMap::new(),
    }
}

fn per_op_of(a: &Totals, b: &Totals, sent: u64) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (key, after) in b {
        let delta = (after - a.get(key).copied().unwrap_or(0.0)).max(0.0);
        let per_op = delta / sent as f64;
        out.insert(key.clone(), per_op);
        let request = key.rsplit('/').next().unwrap_or_default();
        let summed = match request {
            "Produce" => "produce",
            "Fetch" => "fetch",
            _ => continue,
        };
        *out.entry(summed.to_owned()).or_default() += per_op;
    }
    out
}

/// `(request, sent)` of every `kafka_requests_total` line of a Prometheus text exposition, summed over the
/// clients of the process.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("kafka_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let request = labels.split(',').find_map(|label| {
            label
                .trim()
                .strip_prefix("request=\"")
                .and_then(|v| v.strip_suffix('"'))
        });
        if let (Some(request), Ok(value)) = (request, value.trim().parse::<f64>()) {
            *out.entry(request.to_owned()).or_default() += value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_every_client_are_summed_by_request() {
        let text = "# TYPE kafka_requests_total counter\n\
            kafka_requests_total{client=\"command-producer\",request=\"Produce\"} 10\n\
            kafka_requests_total{client=\"reply-consumer\",request=\"Fetch\"} 7\n\
            kafka_requests_total{client=\"other\",request=\"Produce\"} 5\n\
            http_requests_total{method=\"GET\"} 99\n";
        let parsed = parse(text);
        assert_eq!(parsed.get("Produce"), Some(&15.0));
        assert_eq!(parsed.get("Fetch"), Some(&7.0));
        assert_eq!(parsed.len(), 2);
    }

    #[test]
    fn a_phase_divides_the_requests_it_saw_by_its_operations() {
        let a: Totals = [("api/Produce", 100.0), ("worker-1/Fetch", 50.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let b: Totals = [
            ("api/Produce", 300.0),
            ("worker-1/Fetch", 150.0),
            ("worker-2/Fetch", 100.0),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
        let per_op = per_op_of(&a, &b, 100);
        assert_eq!(per_op.get("api/Produce"), Some(&2.0));
        assert_eq!(per_op.get("produce"), Some(&2.0));
        assert_eq!(per_op.get("fetch"), Some(&2.0), "1 + 1 from the workers");
    }
}
