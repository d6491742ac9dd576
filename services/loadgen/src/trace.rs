//! The trace format `marketplace-operator simulate` reads: CSV `t_seconds,requests_per_second`
//! (header optional, `#` comments), a row's rate holding until the next row's time.

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("failed to read trace {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: the trace has no data rows")]
    Empty { path: String },
}

/// Piecewise-constant rate: `rates[i]` holds from `times[i]` to `times[i + 1]` (the last row
/// for the median spacing).
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub times: Vec<f64>,
    pub rates: Vec<f64>,
    pub step: f64,
}

impl Trace {
    pub fn from_file(path: &str) -> Result<Self, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Self, TraceError> {
        let (mut times, mut rates) = (Vec::new(), Vec::new());
        for (i, raw) in text.lines().enumerate() {
            let row = raw.trim();
            if row.is_empty() || row.starts_with('#') {
                continue;
            }
            let bad = |message: String| TraceError::Malformed {
                path: path.to_owned(),
                line: i + 1,
                message,
            };
            let mut fields = row.split(',').map(str::trim);
            let (Some(t), Some(r), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad(format!(
                    "expected `t_seconds,requests_per_second`, got {row:?}"
                )));
            };
            if times.is_empty() && t == "t_seconds" && r == "requests_per_second" {
                continue;
            }
            let t: f64 = t
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| bad(format!("t_seconds {t:?} is not a number")))?;
            let r: f64 = r
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| bad(format!("requests_per_second {r:?} is not a rate")))?;
            if times.last().is_some_and(|p| t <= *p) {
                return Err(bad("t_seconds must increase".into()));
            }
            times.push(t);
            rates.push(r);
        }
        if rates.is_empty() {
            return Err(TraceError::Empty {
                path: path.to_owned(),
            });
        }
        let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_by(f64::total_cmp);
        let step = gaps.get(gaps.len() / 2).copied().unwrap_or(60.0);
        Ok(Self { times, rates, step })
    }

    /// A constant rate for `seconds`.
    pub fn constant(rate: f64, seconds: f64) -> Self {
        Self {
            times: vec![0.0],
            rates: vec![rate],
            step: seconds,
        }
    }

    pub fn end(&self) -> f64 {
        self.times.last().copied().unwrap_or(0.0) + self.step
    }

    /// The rate at trace time `t`.
    pub fn rate_at(&self, t: f64) -> f64 {
        if t < self.times[0] || t >= self.end() {
            return 0.0;
        }
        let i = self.times.partition_point(|x| *x <= t).saturating_sub(1);
        self.rates[i]
    }

    /// The next time a rate changes after `t`.
    pub fn next_change(&self, t: f64) -> f64 {
        let i = self.times.partition_point(|x| *x <= t);
        self.times.get(i).copied().unwrap_or_else(|| self.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_trace_format_parses() {
        let t = Trace::parse("x.csv", "t_seconds,requests_per_second\n0,1.5\n60,3\n").expect("ok");
        assert_eq!(t.rate_at(30.0), 1.5);
        assert_eq!(t.rate_at(60.0), 3.0);
        assert_eq!(t.rate_at(119.0), 3.0);
        assert_eq!(t.rate_at(120.0), 0.0);
        assert_eq!(t.next_change(10.0), 60.0);
    }

    #[test]
    fn errors_name_the_line() {
        let e = Trace::parse("x.csv", "0,1\n60,-2\n").expect_err("negative");
        assert!(e.to_string().starts_with("x.csv:2:"), "{e}");
    }
}
