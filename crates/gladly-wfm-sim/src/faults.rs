//! Fault injection shared by both simulators: `--faults 500:0.05,429:0.02,slow:0.01,cut:0.01`.

use std::sync::Mutex;

use super::rng::Rng;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultRates {
    pub server_error: f64,
    pub too_many: f64,
    pub slow: f64,
    pub cut: f64,
}

/// What to do to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    ServerError,
    TooMany,
    Slow,
    Cut,
}

impl FaultRates {
    pub fn parse(spec: &str) -> Result<FaultRates, String> {
        let mut f = FaultRates::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (kind, rate) = item
                .split_once(':')
                .ok_or_else(|| format!("fault `{item}` is not kind:rate"))?;
            let rate: f64 = rate
                .parse()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("fault `{item}`: rate must be a number from 0 to 1"))?;
            match kind {
                "500" => f.server_error = rate,
                "429" => f.too_many = rate,
                "slow" => f.slow = rate,
                "cut" => f.cut = rate,
                other => {
                    return Err(format!(
                        "unknown fault kind `{other}` (known: 500, 429, slow, cut)"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// Draws faults from a seeded stream so a faulty run is reproducible request by request.
pub struct FaultInjector {
    rates: FaultRates,
    rng: Mutex<Rng>,
}

impl FaultInjector {
    pub fn new(rates: FaultRates, seed: u64) -> FaultInjector {
        FaultInjector {
            rates,
            rng: Mutex::new(Rng::derive(seed, &["faults"])),
        }
    }

    pub fn draw(&self) -> Fault {
        let r = &self.rates;
        if r.server_error + r.too_many + r.slow + r.cut == 0.0 {
            return Fault::None;
        }
        let x = self.rng.lock().unwrap().f64();
        let mut acc = r.server_error;
        if x < acc {
            return Fault::ServerError;
        }
        acc += r.too_many;
        if x < acc {
            return Fault::TooMany;
        }
        acc += r.slow;
        if x < acc {
            return Fault::Slow;
        }
        acc += r.cut;
        if x < acc {
            return Fault::Cut;
        }
        Fault::None
    }
}

/// A sliding-window counter: at most `limit` admissions in any `window`.
pub struct SlidingWindow {
    limit: usize,
    window: std::time::Duration,
    times: Mutex<std::collections::VecDeque<std::time::Instant>>,
}

impl SlidingWindow {
    pub fn new(limit: usize, window: std::time::Duration) -> SlidingWindow {
        SlidingWindow {
            limit,
            window,
            times: Mutex::new(Default::default()),
        }
    }

    /// Admits one more if the window has room; returns (admitted, remaining after).
    pub fn try_admit(&self) -> (bool, usize) {
        let now = std::time::Instant::now();
        let mut t = self.times.lock().unwrap();
        while t
            .front()
            .is_some_and(|f| now.duration_since(*f) >= self.window)
        {
            t.pop_front();
        }
        if t.len() >= self.limit {
            return (false, 0);
        }
        t.push_back(now);
        (true, self.limit - t.len())
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl SlidingWindow {
    /// Seconds until the window has room again (at least 1): the `Retry-After` a server sends.
    pub fn retry_after_secs(&self) -> u64 {
        let now = std::time::Instant::now();
        let t = self.times.lock().unwrap();
        match t.front() {
            Some(f) => {
                let free_at = *f + self.window;
                free_at
                    .saturating_duration_since(now)
                    .as_secs_f64()
                    .ceil()
                    .max(1.0) as u64
            }
            None => 1,
        }
    }
}
