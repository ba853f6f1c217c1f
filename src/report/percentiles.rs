//! Which percentiles the reports show (`--percentiles 50,90,95,99,99.9,99.99`).
//!
//! A [`Percentiles`] list chooses the percentile columns of the text phase tables (run, probe),
//! the `phases.*.percentiles` entries of the JSON report, and is written as
//! `config.percentiles` so that `merge` renders a merged report with the columns its inputs
//! had. The JSON report keeps every phase's full histogram whatever the list says, and always
//! writes the fixed keys `p50`, `p90`, `p95`, `p99` and `p999` (schema v1 never loses a key).
//!
//! Rules:
//! 1. A percentile is above 0 and at most 100; 100 is the maximum (the text tables always show
//!    `max`, so it adds no column there). Parsing is pure: `cli::validate` calls it before any
//!    I/O, and a bad list is a usage error naming the value and the fix.
//! 2. A list is sorted, holds no duplicate and is never empty.
//! 3. The quantile of a percentile is the decimal the user wrote divided by 100, rounded once
//!    (`99.9` → the `f64` nearest to 0.999, the same value as the literal `0.999`), so the text
//!    column `p99.9` and the JSON key `p999` always agree, even where a histogram's count makes
//!    the rank fall exactly on a boundary.

use hdrhistogram::Histogram;

/// The percentiles shown when `--percentiles` is not given.
pub const DEFAULT: [f64; 5] = [50.0, 90.0, 95.0, 99.0, 99.9];

/// Most percentiles one list may hold (each is a column of the text tables).
pub const MAX_PERCENTILES: usize = 16;

/// One percentile to report: above 0 and at most 100 (100 = the maximum).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentile {
    /// The percentile, e.g. 99.9.
    p: f64,
    /// `p / 100`, rounded once from the decimal (rule 3).
    q: f64,
}

impl Percentile {
    /// The maximum (100).
    pub const MAX: Percentile = Percentile { p: 100.0, q: 1.0 };

    /// `p` when it is above 0 and at most 100 (NaN and infinities are not).
    pub fn new(p: f64) -> Option<Percentile> {
        if !(p > 0.0 && p <= 100.0) {
            return None;
        }
        // `{p}` is the shortest decimal that reads back as `p`; "99.9e-2" reads as the f64
        // nearest to 0.999 (rule 3).
        let q: f64 = format!("{p}e-2").parse().ok()?;
        Some(Percentile { p, q })
    }

    /// The percentile, e.g. 99.9.
    pub fn value(self) -> f64 {
        self.p
    }

    /// The quantile, e.g. 0.999.
    pub fn quantile(self) -> f64 {
        self.q
    }

    /// True for 100, the maximum.
    pub fn is_max(self) -> bool {
        self.p == 100.0
    }

    /// Column and key label: `p50`, `p99.9`, `p99.99`; `max` for 100.
    pub fn label(self) -> String {
        if self.is_max() {
            "max".to_string()
        } else {
            format!("p{}", self.p)
        }
    }

    /// The value of a non-empty histogram at this percentile (HdrHistogram's equivalent
    /// value, as every percentile of the reports).
    pub fn of(self, h: &Histogram<u64>) -> u64 {
        if self.is_max() {
            h.max()
        } else {
            h.value_at_quantile(self.q)
        }
    }
}

/// The percentiles a report shows: sorted, without duplicates, never empty.
#[derive(Clone, Debug, PartialEq)]
pub struct Percentiles(Vec<Percentile>);

impl Default for Percentiles {
    fn default() -> Self {
        Percentiles(
            DEFAULT
                .iter()
                .map(|&p| Percentile::new(p).expect("the default percentiles are valid"))
                .collect(),
        )
    }
}

impl Percentiles {
    /// Parse `50,90,95,99,99.9,99.99` (a leading `p` is allowed: `p50,p99`). The error names
    /// the value at fault and what is accepted.
    pub fn parse(s: &str) -> Result<Percentiles, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let num = part
                .strip_prefix('p')
                .or_else(|| part.strip_prefix('P'))
                .unwrap_or(part);
            let bad = || {
                format!(
                    "invalid percentile {part:?} in {s:?}: give numbers above 0 and at most 100 \
                     (100 = the maximum), e.g. 50,90,95,99,99.9,99.99"
                )
            };
            if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return Err(bad());
            }
            let p: f64 = num.parse().map_err(|_| bad())?;
            out.push(Percentile::new(p).ok_or_else(bad)?);
        }
        Self::from_list(out).map_err(|e| format!("{e} in {s:?}"))
    }

    /// The list of `config.percentiles` as a report wrote it, or `None` when it is missing or
    /// not a valid list (`merge` then shows the default columns).
    pub fn from_values(values: &[f64]) -> Option<Percentiles> {
        let list: Option<Vec<Percentile>> = values.iter().map(|&p| Percentile::new(p)).collect();
        Self::from_list(list?).ok()
    }

    fn from_list(mut list: Vec<Percentile>) -> Result<Percentiles, String> {
        list.sort_by(|a, b| a.p.total_cmp(&b.p));
        list.dedup();
        if list.is_empty() {
            return Err("no percentile".to_string());
        }
        if list.len() > MAX_PERCENTILES {
            return Err(format!(
                "{} percentiles (at most {MAX_PERCENTILES})",
                list.len()
            ));
        }
        Ok(Percentiles(list))
    }

    /// The percentiles, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = Percentile> + '_ {
        self.0.iter().copied()
    }

    /// The percentiles below 100: the columns between `min` and `max` of a text table.
    pub fn columns(&self) -> impl Iterator<Item = Percentile> + '_ {
        self.iter().filter(|p| !p.is_max())
    }

    /// The percentile values, for `config.percentiles`.
    pub fn values(&self) -> Vec<f64> {
        self.iter().map(Percentile::value).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::new_histogram;

    fn list(s: &str) -> Vec<f64> {
        Percentiles::parse(s).unwrap().values()
    }

    #[test]
    fn lists_parse_sorted_and_without_duplicates() {
        assert_eq!(
            list("50,90,95,99,99.9,99.99"),
            [50.0, 90.0, 95.0, 99.0, 99.9, 99.99]
        );
        assert_eq!(list("99, 50 ,p95,P99,50"), [50.0, 95.0, 99.0]);
        assert_eq!(list("100"), [100.0]);
        assert_eq!(list("0.001"), [0.001]);
        assert_eq!(Percentiles::default().values(), DEFAULT);
    }

    #[test]
    fn bad_lists_name_the_value_and_the_range() {
        for (bad, needle) in [
            ("0", "\"0\""),
            ("100.1", "\"100.1\""),
            ("-5", "\"-5\""),
            ("50,", "\"\""),
            ("", "\"\""),
            ("abc", "\"abc\""),
            ("nan", "\"nan\""),
            ("inf", "\"inf\""),
            ("1e2", "\"1e2\""),
            ("p999", "\"p999\""),
            ("50;90", "\"50;90\""),
        ] {
            let e = Percentiles::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad:?}: {e}");
            assert!(e.contains("at most 100"), "{bad:?}: {e}");
        }
        let many: Vec<String> = (1..=17).map(|i| i.to_string()).collect();
        let e = Percentiles::parse(&many.join(",")).unwrap_err();
        assert!(e.contains("at most 16"), "{e}");
    }

    #[test]
    fn labels_and_quantiles() {
        let p = |x: f64| Percentile::new(x).unwrap();
        assert_eq!(p(50.0).label(), "p50");
        assert_eq!(p(99.9).label(), "p99.9");
        assert_eq!(p(99.99).label(), "p99.99");
        assert_eq!(p(100.0).label(), "max");
        // Rule 3: the same quantiles as the literals the JSON keys use.
        assert_eq!(p(99.9).quantile(), 0.999);
        assert_eq!(p(99.99).quantile(), 0.9999);
        assert_eq!(p(95.0).quantile(), 0.95);
        assert_eq!(p(0.1).quantile(), 0.001);
        assert!(Percentile::new(0.0).is_none());
        assert!(Percentile::new(f64::NAN).is_none());
        assert!(Percentile::new(f64::INFINITY).is_none());
    }

    #[test]
    fn values_come_from_the_histogram_and_100_is_its_max() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let p = |x: f64| Percentile::new(x).unwrap();
        assert_eq!(p(50.0).of(&h), h.value_at_quantile(0.5));
        assert_eq!(p(99.9).of(&h), h.value_at_quantile(0.999));
        assert_eq!(p(100.0).of(&h), h.max());
        // 1000 samples: the 999th is p99.9, the rank the literal 0.999 gives.
        assert_eq!(p(99.9).of(&h), h.highest_equivalent(999_000));
    }

    #[test]
    fn report_values_read_back_or_fall_back() {
        let d = Percentiles::parse("50,99.99").unwrap();
        assert_eq!(Percentiles::from_values(&d.values()), Some(d));
        assert_eq!(Percentiles::from_values(&[]), None);
        assert_eq!(Percentiles::from_values(&[0.0, 50.0]), None);
        assert_eq!(Percentiles::from_values(&[f64::NAN]), None);
    }

    #[test]
    fn columns_leave_the_maximum_to_the_max_column() {
        let l = Percentiles::parse("50,100").unwrap();
        assert_eq!(
            l.columns().map(Percentile::value).collect::<Vec<_>>(),
            [50.0]
        );
        assert_eq!(l.values(), [50.0, 100.0]);
    }
}
