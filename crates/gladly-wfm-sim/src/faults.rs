//! Fault injection shared by both simulators: `--faults 500:0.05,429:0.02,slow:0.01,cut:0.01,close:0.01`.
//! `cut` breaks a chunked body (the client sees the error); `close` sends half a body without a
//! length and closes the connection mid-line, so the body looks complete to the HTTP layer
//! (the Gladly simulator only; the WFM simulator answers normally).

use std::sync::Mutex;

use super::rng::Rng;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultRates {
    pub server_error: f64,
    pub too_many: f64,
    pub slow: f64,
    pub cut: f64,
    pub close: f64,
}

/// What to do to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    ServerError,
    TooMany,
    Slow,
    Cut,
    Close,
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
                "close" => f.close = rate,
                other => {
                    return Err(format!(
                        "unknown fault kind `{other}` (known: 500, 429, slow, cut, close)"
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
    seed: u64,
    rng: Mutex<Rng>,
    /// Attempts seen per request identity (`draw_for`).
    attempts: Mutex<std::collections::HashMap<String, u32>>,
}

impl FaultInjector {
    pub fn new(rates: FaultRates, seed: u64) -> FaultInjector {
        FaultInjector {
            rates,
            seed,
            rng: Mutex::new(Rng::derive(seed, &["faults"])),
            attempts: Mutex::default(),
        }
    }

    fn off(&self) -> bool {
        let r = &self.rates;
        r.server_error + r.too_many + r.slow + r.cut + r.close == 0.0
    }

    /// The next fault of one stream shared by every request, in arrival order.
    pub fn draw(&self) -> Fault {
        if self.off() {
            return Fault::None;
        }
        let x = self.rng.lock().unwrap().f64();
        self.pick(x)
    }

    /// The fault for the nth attempt of one request (its method, path, query and body): the same
    /// for every run of the same seed, however concurrent requests interleave.
    pub fn draw_for(&self, request: &str) -> Fault {
        if self.off() {
            return Fault::None;
        }
        let n = {
            let mut seen = self.attempts.lock().unwrap();
            let n = seen.entry(request.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let x = Rng::derive(self.seed, &["faults", request, &n.to_string()]).f64();
        self.pick(x)
    }

    fn pick(&self, x: f64) -> Fault {
        let r = &self.rates;
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
        acc += r.close;
        if x < acc {
            return Fault::Close;
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
