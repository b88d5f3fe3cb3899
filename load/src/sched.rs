//! When each request of an open-loop run is meant to start.
//!
//! An open loop sends at a fixed arrival rate whatever the server does, and
//! a request's latency is measured from its *intended* start: a server that
//! stalls for a second makes every request meant for that second wait, and
//! their latencies say so (no coordinated omission). Arrivals are evenly
//! spaced (`uniform`) or a Poisson process (`poisson`: exponential gaps of
//! mean 1/rate, from a seeded generator, so runs repeat).

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    Uniform,
    Poisson,
}

/// A small seeded generator (SplitMix64): reproducible arrivals and data,
/// nothing cryptographic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// The intended start of request 0, 1, 2, ... as offsets from the run's start.
pub struct Schedule {
    rate: f64,
    arrival: Arrival,
    rng: Rng,
    next: f64,
    i: u64,
}

impl Schedule {
    pub fn new(rate: f64, arrival: Arrival, seed: u64) -> Schedule {
        assert!(rate > 0.0, "a schedule needs a positive rate");
        Schedule { rate, arrival, rng: Rng::new(seed), next: 0.0, i: 0 }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let at = match self.arrival {
            Arrival::Uniform => self.i as f64 / self.rate,
            Arrival::Poisson => {
                let t = self.next;
                // Exponential gap: -ln(U) / rate, U in (0, 1].
                self.next += -(1.0 - self.rng.unit()).ln() / self.rate;
                t
            }
        };
        self.i += 1;
        Some(Duration::from_secs_f64(at))
    }
}

/// A request's latency as the report counts it: from its intended start
/// (open loop) or from when it was sent (closed loop) to its answer.
pub fn latency(intended: Duration, sent: Duration, done: Duration, open_loop: bool) -> Duration {
    let from = if open_loop { intended.min(sent) } else { sent };
    done.saturating_sub(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_arrivals_are_evenly_spaced() {
        let s: Vec<Duration> = Schedule::new(4.0, Arrival::Uniform, 1).take(5).collect();
        let ms: Vec<u128> = s.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 250, 500, 750, 1000]);
    }

    #[test]
    fn poisson_arrivals_have_the_rate_as_mean_and_repeat_with_the_seed() {
        let n = 200_000;
        let last = Schedule::new(1000.0, Arrival::Poisson, 7).nth(n).unwrap();
        let rate = n as f64 / last.as_secs_f64();
        assert!((rate - 1000.0).abs() < 10.0, "observed rate {rate}");
        let a: Vec<Duration> = Schedule::new(1000.0, Arrival::Poisson, 7).take(100).collect();
        let b: Vec<Duration> = Schedule::new(1000.0, Arrival::Poisson, 7).take(100).collect();
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        // Gaps of an exponential law: about e^-1 of them exceed the mean gap.
        let gaps: Vec<f64> = Schedule::new(1000.0, Arrival::Poisson, 3)
            .take(100_001)
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        let over = gaps.iter().filter(|g| **g > 0.001).count() as f64 / gaps.len() as f64;
        assert!((over - (-1f64).exp()).abs() < 0.01, "share over the mean: {over}");
    }

    /// A server stalled for one second: in an open loop, requests meant to
    /// start during the stall are answered after it, and their latency runs
    /// from when they were meant to start; a closed loop only sees one slow
    /// request (the one in flight), and its other samples look fast.
    #[test]
    fn a_stall_shows_in_open_loop_latency_and_hides_in_closed_loop() {
        let service = Duration::from_millis(1);
        let stall = (Duration::from_secs(1), Duration::from_secs(2));
        let serve = |at: Duration| -> Duration {
            // One server, first come first served, stalled in [1 s, 2 s).
            let start = if at >= stall.0 && at < stall.1 { stall.1 } else { at };
            start + service
        };
        // Open loop at 100/s for 3 s, one request at a time in arrival order.
        let mut free = Duration::ZERO;
        let mut open: Vec<Duration> = Vec::new();
        for intended in Schedule::new(100.0, Arrival::Uniform, 0).take(300) {
            let sent = intended.max(free);
            let done = serve(sent);
            free = done;
            open.push(latency(intended, sent, done, true));
        }
        // Closed loop for the same 3 s: send, wait, send.
        let (mut t, mut closed) = (Duration::ZERO, Vec::new());
        while t < Duration::from_secs(3) {
            let done = serve(t);
            closed.push(latency(t, t, done, false));
            t = done;
        }
        let p99 = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() * 99 / 100]
        };
        assert!(p99(&mut open) >= Duration::from_millis(900), "open-loop p99 {:?}", p99(&mut open));
        assert!(p99(&mut closed) < Duration::from_millis(10), "closed-loop p99 {:?}", p99(&mut closed));
    }
}
