//! The statistics of `connbench compare` (and of the endpoint benches): is B's latency, rate
//! or error rate different from A's by more than noise? Pure functions over HdrHistograms and
//! counts: no files, no clock, no printing; the same inputs always give the same output.
//!
//! The method (the README's "Comparing runs" and `connbench compare --help` say the same):
//!
//! 1. **Percentiles (p50 … p99.9): a bootstrap of the difference B − A**, resampled from
//!    each run's recorded histogram. A replicate of a run's q-quantile is the k-th smallest of m
//!    draws (with replacement) from its n samples, k = ⌈q·m⌉ as HdrHistogram ranks, where
//!    m = min(n, [`Noise::effective_samples`]). That value is `F⁻¹(U₍ₖ₎)`, `F⁻¹` being the
//!    histogram's quantile function and `U₍ₖ₎`, the k-th smallest of m uniforms, Beta(k,
//!    m−k+1): each replicate draws one Beta number per run instead of m samples, so the work is
//!    [`Noise::resamples`] × 2 draws whatever n is, and the replicates follow the bootstrap
//!    distribution exactly.
//! 2. **The mean: the same bootstrap**, drawing the m samples when m ≤ [`EXACT_MEAN_MAX_N`],
//!    else from its normal limit N(mean, σ²/m).
//! 3. The interval of B − A is the central [`Noise::confidence`] share of the replicates (99 %
//!    by default, 2,000 replicates), drawn from a fixed-seed generator ([`SplitMix64`]) keyed
//!    by the row, so the output is deterministic.
//! 4. **A change is beyond noise when the interval excludes zero on the side the change went
//!    to AND the change is at least [`Noise::min_change`] of A.** A change of 0 never is.
//! 5. **Throughput** (responses or messages per second): the counts as Poisson processes;
//!    given their sum, B's count is binomial, and the Wilson interval of its share gives the
//!    interval of the rate difference (the conditional method for two Poisson rates), with
//!    each count weighing at most [`Noise::effective_samples`]; then the floor of rule 4.
//!    Lower throughput is "slower".
//! 6. **Error rate** (failures ÷ attempts): Newcombe's hybrid score interval (two Wilson
//!    intervals) of the difference of two proportions; no floor (errors are rare, so relative
//!    changes mean little), beyond noise when the interval excludes zero.
//!
//! 7. **Too few samples are not judged** ([`Verdict::NotJudged`], no interval): a bootstrap
//!    from a handful of samples only ever sees values between them, so two samples of A
//!    below two of B would look like a clear change one time in six. A q-quantile is judged
//!    when both runs have enough samples for its distribution-free interval to be bounded
//!    (all n on one side of it, max(q, 1−q)ⁿ, less likely than (1−c)/2: at 99 %, p50 needs 8,
//!    p90 51, p95 104, p99 528, p99.9 5,296; [`min_samples`]), the mean [`MEAN_MIN_N`]. The
//!    max is one sample that a longer run may always exceed: never judged.
//!
//! Why m and the floor (rules 1 and 4): a plain bootstrap (m = n) takes the samples of a run
//! as independent. They are not: a stall delays every request in flight at once, and the
//! machine's load drifts between runs, so two runs of one setup differ by far more than it
//! says. Measured on the 2-core CI machine shared with other builds (2026-11-30, debug build,
//! built-in target, `-c 2 -d 2s`, 28 pairs of runs one after the other, load average ~3):
//! identical settings moved p50 by up to 8 %, p90 by 22 %, p95 by 95 %, p99.9 by 104 % and
//! the mean by 52 %, and the plain bootstrap called most of those beyond noise. What moves is
//! the share of slow requests, so the interval must be as wide as a run of only a few hundred
//! independent samples would give: with m = 300 none of the 28 pairs' tails was beyond noise,
//! and the 10 % floor covers the drift of the whole distribution (p50). Two runs made at the
//! same time (8 pairs) moved p50 by at most 1.4 % and p99 by 7.6 %: drift, not sampling, is
//! the noise, and compare cannot tell a busier machine from a slower target. At load average
//! 8 (4 × oversubscribed) runs one after the other moved p50 by 17 % and throughput 14-fold:
//! no setting makes such runs comparable.
//!
//! Verdicts say which way B went: [`Verdict::Slower`], [`Verdict::Faster`],
//! [`Verdict::NoChange`] (latency and throughput), [`Verdict::MoreErrors`],
//! [`Verdict::FewerErrors`] (error rate), or that a row was not judged
//! ([`Verdict::NotJudged`], rule 7).

use hdrhistogram::Histogram;

use crate::report::schema::Verdict;

/// Replicates per row (rule 3).
pub const DEFAULT_RESAMPLES: u32 = 2_000;
/// Share of the replicates the interval covers (rule 3).
pub const DEFAULT_CONFIDENCE: f64 = 0.99;
/// The floor of rule 4, as a fraction of A: 10 % (see the module doc for the measurement).
pub const DEFAULT_MIN_CHANGE: f64 = 0.10;
/// Most samples a run counts as independent (rule 1; see the module doc for the measurement).
pub const DEFAULT_EFFECTIVE_SAMPLES: u64 = 300;
/// Fewest samples for the mean to be judged (rule 7): the usual minimum for the central limit
/// theorem.
pub const MEAN_MIN_N: u64 = 30;
/// Largest n for which the mean is resampled sample by sample (rule 2).
pub const EXACT_MEAN_MAX_N: u64 = 1_000;
/// Seed of every row's generator (mixed with the row's key): fixed, so output is reproducible.
pub const SEED: u64 = 0x636f_6e6e_6265_6e63; // "connbenc"

/// How noise is judged (rules 3 and 4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Noise {
    /// Share of the bootstrap replicates the interval covers, in (0, 1).
    pub confidence: f64,
    /// Bootstrap replicates per row (at least 1).
    pub resamples: u32,
    /// Smallest change (fraction of A, ≥ 0) that can be beyond noise.
    pub min_change: f64,
    /// Most samples a run counts as independent (rule 1): a replicate draws
    /// min(n, this) samples.
    pub effective_samples: u64,
}

impl Default for Noise {
    fn default() -> Noise {
        Noise {
            confidence: DEFAULT_CONFIDENCE,
            resamples: DEFAULT_RESAMPLES,
            min_change: DEFAULT_MIN_CHANGE,
            effective_samples: DEFAULT_EFFECTIVE_SAMPLES,
        }
    }
}

/// One compared statistic of a latency histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stat {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// Largest sample.
    Max,
    /// Arithmetic mean.
    Mean,
}

impl Stat {
    /// Every statistic, in table order.
    pub const ALL: [Stat; 7] = [
        Stat::P50,
        Stat::P90,
        Stat::P95,
        Stat::P99,
        Stat::P999,
        Stat::Max,
        Stat::Mean,
    ];

    /// The name users type and reports show: `p50`, `p99.9`, `max`, `mean`.
    pub fn name(self) -> &'static str {
        match self {
            Stat::P50 => "p50",
            Stat::P90 => "p90",
            Stat::P95 => "p95",
            Stat::P99 => "p99",
            Stat::P999 => "p99.9",
            Stat::Max => "max",
            Stat::Mean => "mean",
        }
    }

    /// The statistic named `s` ([`Stat::name`]; `p999` is accepted for `p99.9`, as the
    /// report's key spells it).
    pub fn parse(s: &str) -> Option<Stat> {
        if s == "p999" {
            return Some(Stat::P999);
        }
        Stat::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The quantile it is (max is the quantile 1); `None` for the mean.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Stat::P50 => Some(0.50),
            Stat::P90 => Some(0.90),
            Stat::P95 => Some(0.95),
            Stat::P99 => Some(0.99),
            Stat::P999 => Some(0.999),
            Stat::Max => Some(1.0),
            Stat::Mean => None,
        }
    }
}

/// A value of A, of B, the change and its interval, and the verdict.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    /// A's value.
    pub a: f64,
    /// B's value.
    pub b: f64,
    /// B − A.
    pub delta: f64,
    /// (B − A) ÷ A × 100; `None` when A is 0.
    pub delta_pct: Option<f64>,
    /// The interval (low, high) of B − A; `None` when the row is not judged (rule 7).
    pub interval: Option<(f64, f64)>,
    /// What the change means, after noise.
    pub verdict: Verdict,
}

impl Change {
    /// True when the change is beyond noise (slower, faster, more or fewer errors).
    pub fn beyond_noise(&self) -> bool {
        !matches!(self.verdict, Verdict::NoChange | Verdict::NotJudged)
    }

    /// Lower end of the interval (NaN when not judged).
    pub fn low(&self) -> f64 {
        self.interval.map_or(f64::NAN, |i| i.0)
    }

    /// Upper end of the interval (NaN when not judged).
    pub fn high(&self) -> f64 {
        self.interval.map_or(f64::NAN, |i| i.1)
    }
}

/// The fewest samples each run needs for `stat` to be judged at `confidence` (rule 7); `None`
/// for the max, which is never judged.
pub fn min_samples(stat: Stat, confidence: f64) -> Option<u64> {
    let tail = (1.0 - confidence.clamp(0.0, 0.999_999)) / 2.0;
    match stat.quantile() {
        Some(q) if q >= 1.0 => None,
        // All n samples on one side of the q-quantile: probability max(q, 1−q)^n.
        Some(q) => Some((tail.ln() / q.max(1.0 - q).ln()).ceil().max(1.0) as u64),
        None => Some(MEAN_MIN_N),
    }
}

/// A histogram's recorded buckets as a quantile function: `values[i]` holds the samples of
/// ranks `cum[i-1]+1 ..= cum[i]`.
#[derive(Clone, Debug)]
struct Quantiles {
    /// Highest equivalent value of each non-empty bucket (what HdrHistogram reports for a
    /// quantile), ascending.
    values: Vec<u64>,
    /// Median equivalent of each bucket (what HdrHistogram's mean uses).
    medians: Vec<u64>,
    /// Cumulative count up to and including each bucket.
    cum: Vec<u64>,
    /// Samples.
    n: u64,
}

impl Quantiles {
    fn new(h: &Histogram<u64>) -> Quantiles {
        let mut q = Quantiles {
            values: Vec::new(),
            medians: Vec::new(),
            cum: Vec::new(),
            n: 0,
        };
        for v in h.iter_recorded() {
            // Saturating: a damaged histogram must not panic here (readers refuse more than
            // 2^53 samples before they get this far).
            q.n = q.n.saturating_add(v.count_at_value());
            q.values.push(v.value_iterated_to());
            q.medians.push(h.median_equivalent(v.value_iterated_to()));
            q.cum.push(q.n);
        }
        q
    }

    /// The bucket holding the sample of 1-based rank `rank` (clamped to 1 ..= n).
    fn bucket(&self, rank: u64) -> usize {
        let rank = rank.clamp(1, self.n);
        self.cum.partition_point(|&c| c < rank)
    }

    /// HdrHistogram's rank of quantile `q`: ⌈q·n⌉, at least 1.
    fn rank(&self, q: f64) -> u64 {
        rank_of(q, self.n)
    }

    /// Draws per bootstrap replicate: n, at most [`Noise::effective_samples`] (at least 1).
    fn m(&self, noise: &Noise) -> u64 {
        self.n.min(noise.effective_samples).max(1)
    }

    /// The quantile function at `u` in [0, 1]: the sample of rank ⌈u·n⌉.
    fn at(&self, u: f64) -> u64 {
        self.values[self.bucket(self.rank(u))]
    }
}

/// HdrHistogram's rank of quantile `q` among `n` samples: ⌈q·n⌉, from 1 to n.
fn rank_of(q: f64, n: u64) -> u64 {
    ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n.max(1))
}

/// Compare one statistic of two latency histograms (ns). `None` when either is empty. `key`
/// picks the row's random stream (e.g. a hash of the phase name): the same key and inputs give
/// the same interval.
pub fn compare_stat(
    a: &Histogram<u64>,
    b: &Histogram<u64>,
    stat: Stat,
    noise: &Noise,
    key: u64,
) -> Option<Change> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (qa, qb) = (Quantiles::new(a), Quantiles::new(b));
    Some(compare_quantiles(a, b, &qa, &qb, stat, noise, key))
}

/// Compare every statistic of `stats` of two latency histograms (one phase). Empty when either
/// histogram is.
pub fn compare_histograms(
    a: &Histogram<u64>,
    b: &Histogram<u64>,
    stats: &[Stat],
    noise: &Noise,
    key: u64,
) -> Vec<(Stat, Change)> {
    if a.is_empty() || b.is_empty() {
        return Vec::new();
    }
    let (qa, qb) = (Quantiles::new(a), Quantiles::new(b));
    stats
        .iter()
        .map(|&s| (s, compare_quantiles(a, b, &qa, &qb, s, noise, key)))
        .collect()
}

fn compare_quantiles(
    a: &Histogram<u64>,
    b: &Histogram<u64>,
    qa: &Quantiles,
    qb: &Quantiles,
    stat: Stat,
    noise: &Noise,
    key: u64,
) -> Change {
    let judged = min_samples(stat, noise.confidence).is_some_and(|n| qa.n >= n && qb.n >= n);
    if !judged {
        let (va, vb) = match stat.quantile() {
            Some(q) => (
                qa.values[qa.bucket(qa.rank(q))] as f64,
                qb.values[qb.bucket(qb.rank(q))] as f64,
            ),
            None => (crate::report::json::mean(a), crate::report::json::mean(b)),
        };
        return not_judged(va, vb);
    }
    let mut rng = SplitMix64::new(SEED ^ key.rotate_left(17) ^ ((stat as u64 + 1) * 0x9e37));
    let resamples = noise.resamples.max(1) as usize;
    let mut deltas = Vec::with_capacity(resamples);
    let (va, vb) = match stat.quantile() {
        Some(q) => {
            let (ka, kb) = (qa.rank(q), qb.rank(q));
            // The replicate's rank among m draws (rule 1), m = min(n, effective samples).
            let (ma, mb) = (qa.m(noise), qb.m(noise));
            let (ja, jb) = (rank_of(q, ma), rank_of(q, mb));
            for _ in 0..resamples {
                let ua = beta(&mut rng, ja as f64, (ma - ja + 1) as f64);
                let ub = beta(&mut rng, jb as f64, (mb - jb + 1) as f64);
                deltas.push(qb.at(ub) as f64 - qa.at(ua) as f64);
            }
            (
                qa.values[qa.bucket(ka)] as f64,
                qb.values[qb.bucket(kb)] as f64,
            )
        }
        None => {
            let (ma, mb) = (crate::report::json::mean(a), crate::report::json::mean(b));
            let (sa, sb) = (a.stdev(), b.stdev());
            for _ in 0..resamples {
                let ra = resampled_mean(&mut rng, qa, qa.m(noise), ma, sa);
                let rb = resampled_mean(&mut rng, qb, qb.m(noise), mb, sb);
                deltas.push(rb - ra);
            }
            (ma, mb)
        }
    };
    let (low, high) = central_interval(&mut deltas, noise.confidence);
    change(va, vb, low, high, noise.min_change, true)
}

/// One bootstrap replicate of the mean of `q` from `m` draws (rule 2).
fn resampled_mean(rng: &mut SplitMix64, q: &Quantiles, m: u64, mean: f64, stdev: f64) -> f64 {
    if m <= EXACT_MEAN_MAX_N {
        let mut sum = 0.0;
        for _ in 0..m {
            let rank = rng.below(q.n) + 1;
            sum += q.medians[q.bucket(rank)] as f64;
        }
        sum / m as f64
    } else {
        mean + stdev / (m as f64).sqrt() * rng.normal()
    }
}

/// The central `confidence` share of `xs` (sorted in place): the values at the
/// (1−c)/2 and (1+c)/2 empirical quantiles.
fn central_interval(xs: &mut [f64], confidence: f64) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let tail = (1.0 - confidence.clamp(0.0, 1.0)) / 2.0;
    let lo = ((tail * n as f64).floor() as usize).min(n - 1);
    let hi = (((1.0 - tail) * n as f64).ceil() as usize)
        .saturating_sub(1)
        .clamp(lo, n - 1);
    (xs[lo], xs[hi])
}

/// The change from `a` to `b` with the interval `[low, high]` of B − A, judged by rule 4.
/// `higher_is_slower`: latency (true) or throughput (false).
fn change(a: f64, b: f64, low: f64, high: f64, min_change: f64, higher_is_slower: bool) -> Change {
    let delta = b - a;
    let delta_pct = (a != 0.0).then(|| delta / a * 100.0);
    // Beyond noise: the interval lies on the side of zero the change went to (a change of 0,
    // or an interval on the other side, is never beyond noise), and the change reaches the
    // floor.
    let clear = (delta > 0.0 && low > 0.0) || (delta < 0.0 && high < 0.0);
    let big = delta_pct.is_none_or(|p| p.abs() >= min_change * 100.0);
    let verdict = if !(clear && big) {
        Verdict::NoChange
    } else if (delta > 0.0) == higher_is_slower {
        Verdict::Slower
    } else {
        Verdict::Faster
    };
    Change {
        a,
        b,
        delta,
        delta_pct,
        interval: Some((low, high)),
        verdict,
    }
}

/// A row with too few samples to judge (rule 7): the values and the change, no interval.
fn not_judged(a: f64, b: f64) -> Change {
    let delta = b - a;
    Change {
        a,
        b,
        delta,
        delta_pct: (a != 0.0).then(|| delta / a * 100.0),
        interval: None,
        verdict: Verdict::NotJudged,
    }
}

/// The two-sided standard-normal quantile for `confidence` (e.g. 2.576 for 0.99), by
/// bisection on [`normal_cdf`]: no table, any confidence.
fn z_for(confidence: f64) -> f64 {
    let target = 0.5 + confidence.clamp(0.0, 0.999_999_999) / 2.0;
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// Φ(x), through erfc (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        1.0 - erfc / 2.0
    } else {
        erfc / 2.0
    }
}

/// Wilson score interval of a proportion `k` of `n` (n > 0) at `z`. Counts as floats, so a
/// sum of two counts near `u64::MAX` (a saturated merge) cannot overflow.
fn wilson(k: f64, n: f64, z: f64) -> (f64, f64) {
    let p = k / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// A count over a window: what a throughput is made of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Count {
    /// Events (responses, messages).
    pub events: u64,
    /// The window, seconds (> 0).
    pub seconds: f64,
}

/// Compare two throughputs (events per second; rule 5). `None` when a window is not positive.
pub fn compare_rates(a: Count, b: Count, noise: &Noise) -> Option<Change> {
    if !(a.seconds > 0.0 && b.seconds > 0.0 && a.seconds.is_finite() && b.seconds.is_finite()) {
        return None;
    }
    let (ra, rb) = (a.events as f64 / a.seconds, b.events as f64 / b.seconds);
    // Given the total N, B's share p of it is binomial; the rate difference it implies,
    // N·(p/T_B − (1−p)/T_A), grows with p, so the ends of p's interval give B − A's.
    let total = a.events as f64 + b.events as f64;
    let diff = |p: f64| total * (p / b.seconds - (1.0 - p) / a.seconds);
    let (low, high) = if total == 0.0 {
        (0.0, 0.0)
    } else {
        // Counts beyond the effective samples weigh no more than that many (rule 5).
        let m = noise.effective_samples.max(1) as f64;
        let scale = (m / a.events.max(b.events) as f64).min(1.0);
        let (ea, eb) = (
            (a.events as f64 * scale).round(),
            (b.events as f64 * scale).round(),
        );
        let (plo, phi) = wilson(eb, ea + eb, z_for(noise.confidence));
        (diff(plo), diff(phi))
    };
    Some(change(ra, rb, low, high, noise.min_change, false))
}

/// A share of attempts that failed: what an error rate is made of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Failures {
    /// Failed attempts.
    pub failed: u64,
    /// All attempts (failed or not).
    pub attempts: u64,
}

/// Compare two error rates (rule 6): values and interval are fractions (0.001 = 0.1 %).
/// `None` when either side made no attempt.
pub fn compare_error_rates(a: Failures, b: Failures, noise: &Noise) -> Option<Change> {
    if a.attempts == 0 || b.attempts == 0 {
        return None;
    }
    let z = z_for(noise.confidence);
    let (pa, pb) = (
        a.failed.min(a.attempts) as f64 / a.attempts as f64,
        b.failed.min(b.attempts) as f64 / b.attempts as f64,
    );
    let (la, ua) = wilson(a.failed.min(a.attempts) as f64, a.attempts as f64, z);
    let (lb, ub) = wilson(b.failed.min(b.attempts) as f64, b.attempts as f64, z);
    // Newcombe (1998), method 10.
    let d = pb - pa;
    let low = d - ((pb - lb).powi(2) + (ua - pa).powi(2)).sqrt();
    let high = d + ((ub - pb).powi(2) + (pa - la).powi(2)).sqrt();
    let verdict = if d > 0.0 && low > 0.0 {
        Verdict::MoreErrors
    } else if d < 0.0 && high < 0.0 {
        Verdict::FewerErrors
    } else {
        Verdict::NoChange
    };
    Some(Change {
        a: pa,
        b: pb,
        delta: d,
        delta_pct: (pa != 0.0).then(|| d / pa * 100.0),
        interval: Some((low, high)),
        verdict,
    })
}

/// A small, fixed, portable generator (Steele, Lea and Flood's SplitMix64): the same seed gives
/// the same numbers on every machine and with every version of every crate.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1): never exactly 0, so its logarithm is finite.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform integer in 0 .. n (n > 0), without modulo bias (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Standard normal (Box–Muller; one of the pair is discarded to keep no state).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Gamma(shape, 1) for shape ≥ 1 (Marsaglia and Tsang, 2000).
fn gamma(rng: &mut SplitMix64, shape: f64) -> f64 {
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = rng.uniform();
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// Beta(a, b) for a, b ≥ 1, as X ÷ (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
fn beta(rng: &mut SplitMix64, a: f64, b: f64) -> f64 {
    let x = gamma(rng, a);
    let y = gamma(rng, b);
    x / (x + y)
}

/// A stable 64-bit key for a name (FNV-1a), to give each phase its own random stream.
pub fn key_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::new_histogram;

    /// `n` samples of a log-normal latency (median `median_ns`, shape `sigma`), scaled by
    /// `factor`, from the generator seeded with `seed`.
    fn lognormal(seed: u64, n: usize, median_ns: f64, sigma: f64, factor: f64) -> Histogram<u64> {
        let mut rng = SplitMix64::new(seed);
        let mut h = new_histogram();
        for _ in 0..n {
            let v = median_ns * (sigma * rng.normal()).exp() * factor;
            h.record(v.round().max(1.0) as u64).expect("in range");
        }
        h
    }

    /// The bootstrap as a textbook one: every sample independent, no floor.
    fn plain() -> Noise {
        Noise {
            min_change: 0.0,
            effective_samples: u64::MAX,
            ..Noise::default()
        }
    }

    #[test]
    fn point_values_are_hdrhistograms() {
        let h = lognormal(1, 6_000, 40_000.0, 0.6, 1.0);
        let q = Quantiles::new(&h);
        assert_eq!(q.n, h.len());
        for stat in Stat::ALL {
            let c = compare_stat(&h, &h, stat, &Noise::default(), 7).expect("not empty");
            let want = match stat.quantile() {
                Some(p) => h.value_at_quantile(p) as f64,
                None => crate::report::json::mean(&h),
            };
            assert_eq!(c.a, want, "{stat:?}");
            assert_eq!(c.b, want, "{stat:?}");
            assert_eq!(c.delta, 0.0);
            if stat == Stat::Max {
                assert_eq!(c.verdict, Verdict::NotJudged, "{c:?}");
                assert_eq!(c.interval, None);
            } else {
                assert_eq!(c.verdict, Verdict::NoChange, "{stat:?}: {c:?}");
                assert!(c.low() <= 0.0 && c.high() >= 0.0, "{stat:?}: {c:?}");
            }
        }
        assert_eq!(q.at(1.0), h.max());
        assert_eq!(q.at(0.0), h.value_at_quantile(0.0).max(q.values[0]));
    }

    #[test]
    fn same_distribution_is_no_change_and_a_shift_is_detected() {
        let a = lognormal(11, 20_000, 40_000.0, 0.5, 1.0);
        let same = lognormal(12, 20_000, 40_000.0, 0.5, 1.0);
        let slower = lognormal(13, 20_000, 40_000.0, 0.5, 1.3);
        let faster = lognormal(14, 20_000, 40_000.0, 0.5, 0.7);
        let noise = Noise::default();
        for (stat, c) in compare_histograms(&a, &same, &Stat::ALL, &noise, 1) {
            let want = if stat == Stat::Max {
                Verdict::NotJudged
            } else {
                Verdict::NoChange
            };
            assert_eq!(c.verdict, want, "{stat:?}: {c:?}");
        }
        // 30 % slower everywhere: beyond noise from p50 to p95 and the mean. p99 and beyond,
        // from 300 effective samples, are too uncertain for 30 %; with 5,000 p99 is judged.
        let rows = compare_histograms(&a, &slower, &Stat::ALL, &noise, 1);
        for (stat, c) in &rows {
            let pct = c.delta_pct.expect("A is not 0");
            // The max is one sample of each: it need not have moved by 30 %.
            if *stat != Stat::Max {
                assert!((pct - 30.0).abs() < 8.0, "{stat:?}: {c:?}");
            }
            if matches!(stat, Stat::P50 | Stat::P90 | Stat::P95 | Stat::Mean) {
                assert_eq!(c.verdict, Verdict::Slower, "{stat:?}: {c:?}");
                assert!(
                    c.low() > 0.0 && c.low() <= c.delta && c.delta <= c.high(),
                    "{c:?}"
                );
            } else if *stat == Stat::Max {
                assert_eq!(c.verdict, Verdict::NotJudged, "{c:?}");
            } else {
                assert_eq!(c.verdict, Verdict::NoChange, "{stat:?}: {c:?}");
            }
        }
        let more = Noise {
            effective_samples: 5_000,
            ..noise
        };
        let c = compare_stat(&a, &slower, Stat::P99, &more, 1).unwrap();
        assert_eq!(c.verdict, Verdict::Slower, "{c:?}");
        for (stat, c) in compare_histograms(&a, &faster, &[Stat::P50, Stat::Mean], &noise, 1) {
            assert_eq!(c.verdict, Verdict::Faster, "{stat:?}: {c:?}");
            assert!(c.high() < 0.0, "{c:?}");
        }
    }

    #[test]
    fn the_floor_and_the_effective_samples_keep_a_small_shift_within_noise() {
        // 5 % slower, 200,000 samples each: the plain bootstrap calls it, the defaults do not.
        let a = lognormal(21, 200_000, 40_000.0, 0.5, 1.0);
        let b = lognormal(22, 200_000, 40_000.0, 0.5, 1.05);
        let p = compare_stat(&a, &b, Stat::P50, &plain(), 3).unwrap();
        assert_eq!(p.verdict, Verdict::Slower, "{p:?}");
        let d = compare_stat(&a, &b, Stat::P50, &Noise::default(), 3).unwrap();
        assert_eq!(d.verdict, Verdict::NoChange, "{d:?}");
        // Same data, same point values; fewer effective samples widen the interval.
        assert_eq!((p.a, p.b), (d.a, d.b));
        assert!(
            d.high() - d.low() > 5.0 * (p.high() - p.low()),
            "{p:?} vs {d:?}"
        );
        // The floor alone: a clear 5 % change is still "no change" under a 10 % floor.
        let floor_only = Noise {
            min_change: 0.10,
            ..plain()
        };
        let f = compare_stat(&a, &b, Stat::P50, &floor_only, 3).unwrap();
        assert!(f.low() > 0.0, "the interval excludes 0: {f:?}");
        assert_eq!(f.verdict, Verdict::NoChange, "{f:?}");
    }

    #[test]
    fn the_plain_bootstrap_is_calibrated() {
        // A and B from one distribution, 40 seeds × 5 statistics at 90 %: about 10 % of the
        // intervals should miss 0. With every sample independent (as here) the exact
        // order-statistic replicates must give that rate, not 0 % and not 50 %.
        let noise = Noise {
            confidence: 0.90,
            resamples: 1_000,
            ..plain()
        };
        let stats = [Stat::P50, Stat::P90, Stat::P99, Stat::Mean, Stat::P95];
        let (mut missed, mut total) = (0, 0);
        for seed in 0..40u64 {
            let a = lognormal(1_000 + seed, 4_000, 40_000.0, 0.5, 1.0);
            let b = lognormal(2_000 + seed, 4_000, 40_000.0, 0.5, 1.0);
            for (_, c) in compare_histograms(&a, &b, &stats, &noise, seed) {
                total += 1;
                if c.low() > 0.0 || c.high() < 0.0 {
                    missed += 1;
                }
            }
        }
        // Binomial(200, 0.1): mean 20, sd 4.2; 8 ..= 34 is beyond ±3 sd.
        assert!((8..=34).contains(&missed), "{missed} of {total} missed 0");
    }

    #[test]
    fn the_interval_of_the_median_has_the_textbook_width() {
        // Normal samples: the median's standard error is 1.2533 σ/√n, so the 99 % interval of
        // the difference of two medians is ±2.576 × √2 × that.
        // σ = 20 % of the mean, so the interval spans many histogram buckets (3 significant
        // digits: 512 ns wide around 1 ms).
        let n = 20_000usize;
        let sigma = 200_000.0;
        let sample = |seed: u64| {
            let mut rng = SplitMix64::new(seed);
            let mut h = new_histogram();
            for _ in 0..n {
                h.record((1_000_000.0 + sigma * rng.normal()).round() as u64)
                    .expect("in range");
            }
            h
        };
        let (a, b) = (sample(5), sample(6));
        let c = compare_stat(&a, &b, Stat::P50, &plain(), 9).unwrap();
        let want = 2.0 * 2.576 * 2f64.sqrt() * 1.2533 * sigma / (n as f64).sqrt();
        let got = c.high() - c.low();
        assert!((got / want - 1.0).abs() < 0.15, "width {got} vs {want}");
    }

    #[test]
    fn output_is_deterministic_and_keyed() {
        let a = lognormal(31, 3_000, 40_000.0, 0.5, 1.0);
        let b = lognormal(32, 3_000, 40_000.0, 0.5, 1.0);
        let n = Noise::default();
        let x = compare_histograms(&a, &b, &Stat::ALL, &n, key_of("ttfb"));
        let y = compare_histograms(&a, &b, &Stat::ALL, &n, key_of("ttfb"));
        assert_eq!(x, y);
        let z = compare_histograms(&a, &b, &Stat::ALL, &n, key_of("total"));
        assert_ne!(x, z, "another key, another stream");
        assert_eq!(
            x.iter().map(|(_, c)| (c.a, c.b)).collect::<Vec<_>>(),
            z.iter().map(|(_, c)| (c.a, c.b)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn two_samples_each_are_not_judged_though_a_bootstrap_would_call_them_clear() {
        let empty = new_histogram();
        let mut two = new_histogram();
        two.record(80_000).unwrap();
        two.record(180_000).unwrap();
        assert!(compare_stat(&empty, &two, Stat::P50, &Noise::default(), 0).is_none());
        assert!(compare_histograms(&two, &empty, &Stat::ALL, &Noise::default(), 0).is_empty());
        // Two samples each (a keep-alive run's connects), B's both above A's: a bootstrap
        // would call that clear; it happens one time in six by chance. Not judged.
        let mut slower = new_histogram();
        slower.record(190_000).unwrap();
        slower.record(270_000).unwrap();
        for (stat, c) in compare_histograms(&two, &slower, &Stat::ALL, &Noise::default(), 0) {
            assert_eq!(c.verdict, Verdict::NotJudged, "{stat:?}: {c:?}");
            assert_eq!(c.interval, None);
            assert_eq!(c.delta, c.b - c.a);
        }
        // The median needs 8 samples each at 99 %: with 7 all above A's, not judged; with 8,
        // slower.
        let run = |n: u64, base: u64| {
            let mut h = new_histogram();
            for i in 0..n {
                h.record(base + i * 1_000).unwrap();
            }
            h
        };
        assert_eq!(min_samples(Stat::P50, 0.99), Some(8));
        assert_eq!(min_samples(Stat::P99, 0.99), Some(528));
        assert_eq!(min_samples(Stat::P999, 0.99), Some(5_296));
        assert_eq!(min_samples(Stat::Max, 0.99), None);
        let seven = compare_stat(&run(7, 10_000), &run(7, 50_000), Stat::P50, &plain(), 0);
        assert_eq!(seven.unwrap().verdict, Verdict::NotJudged);
        let eight = compare_stat(&run(8, 10_000), &run(8, 50_000), Stat::P50, &plain(), 0);
        assert_eq!(eight.unwrap().verdict, Verdict::Slower);
    }

    #[test]
    fn throughput_is_judged_like_latency_with_lower_as_slower() {
        let n = Noise::default();
        let a = Count {
            events: 40_000,
            seconds: 2.0,
        };
        let same = Count {
            events: 39_600,
            seconds: 2.0,
        };
        let c = compare_rates(a, same, &n).unwrap();
        assert_eq!((c.a, c.b), (20_000.0, 19_800.0));
        assert_eq!(c.verdict, Verdict::NoChange, "{c:?}");
        assert!(c.low() < c.delta && c.delta < c.high(), "{c:?}");
        let half = Count {
            events: 10_000,
            seconds: 1.0,
        };
        let c = compare_rates(a, half, &n).unwrap();
        assert_eq!(c.verdict, Verdict::Slower, "{c:?}");
        assert!(c.high() < 0.0);
        let c = compare_rates(half, a, &n).unwrap();
        assert_eq!(c.verdict, Verdict::Faster, "{c:?}");
        // Different windows, same rate.
        let longer = Count {
            events: 100_000,
            seconds: 5.0,
        };
        assert_eq!(
            compare_rates(a, longer, &n).unwrap().verdict,
            Verdict::NoChange
        );
        let zero = Count {
            events: 0,
            seconds: 0.0,
        };
        assert!(compare_rates(a, zero, &n).is_none());
    }

    /// Found by the `compare_reader` fuzz smoke in CI: two reports whose response counts are
    /// near `u64::MAX` (what a saturated `merge` writes), compared with `--effective-samples`
    /// above them, overflowed `ea + eb` and panicked.
    #[test]
    fn rates_with_counts_near_u64_max_compare_without_overflow() {
        let n = Noise {
            effective_samples: u64::MAX,
            ..Noise::default()
        };
        let huge = Count {
            events: u64::MAX,
            seconds: 1.0,
        };
        let c = compare_rates(huge, huge, &n).unwrap();
        assert_eq!(c.verdict, Verdict::NoChange, "{c:?}");
        assert!(c.low() <= 0.0 && 0.0 <= c.high(), "{c:?}");
        let half = Count {
            events: u64::MAX / 2,
            seconds: 1.0,
        };
        let c = compare_rates(huge, half, &n).unwrap();
        assert_eq!(c.verdict, Verdict::Slower, "{c:?}");
        assert!(c.high() < 0.0, "{c:?}");
    }

    #[test]
    fn error_rates_use_two_proportions() {
        let n = Noise::default();
        let none = Failures {
            failed: 0,
            attempts: 40_000,
        };
        let one = Failures {
            failed: 1,
            attempts: 40_000,
        };
        let many = Failures {
            failed: 400,
            attempts: 40_000,
        };
        assert_eq!(
            compare_error_rates(none, none, &n).unwrap().verdict,
            Verdict::NoChange
        );
        let c = compare_error_rates(none, one, &n).unwrap();
        assert_eq!(c.verdict, Verdict::NoChange, "one error in 40,000: {c:?}");
        assert_eq!(c.delta_pct, None, "A was 0 %");
        let c = compare_error_rates(none, many, &n).unwrap();
        assert_eq!(c.verdict, Verdict::MoreErrors, "{c:?}");
        assert!((c.b - 0.01).abs() < 1e-12 && c.low() > 0.0 && c.low() < 0.01 && c.high() > 0.01);
        let c = compare_error_rates(many, none, &n).unwrap();
        assert_eq!(c.verdict, Verdict::FewerErrors, "{c:?}");
        let nothing = Failures {
            failed: 0,
            attempts: 0,
        };
        assert!(compare_error_rates(nothing, one, &n).is_none());
    }

    #[test]
    fn generator_and_samplers() {
        let mut r = SplitMix64::new(42);
        let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut again = SplitMix64::new(42);
        assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        let mut r = SplitMix64::new(7);
        let n = 20_000;
        let (mut sum, mut below) = (0.0, [0u64; 3]);
        for _ in 0..n {
            let u = r.uniform();
            assert!(u > 0.0 && u < 1.0);
            sum += u;
            below[r.below(3) as usize] += 1;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.01);
        assert!(
            below.iter().all(|&c| (6_200..7_100).contains(&c)),
            "{below:?}"
        );
        // Beta(a, b) has mean a/(a+b): small and huge shapes.
        for (a, b) in [(1.0, 1.0), (2.0, 5.0), (30.0, 1.0), (5e6, 5e6 + 1.0)] {
            let m: f64 = (0..4_000).map(|_| beta(&mut r, a, b)).sum::<f64>() / 4_000.0;
            let want = a / (a + b);
            let sd = (a * b / ((a + b).powi(2) * (a + b + 1.0))).sqrt();
            assert!(
                (m - want).abs() < 5.0 * sd / (4_000f64).sqrt() + 1e-12,
                "Beta({a},{b}) mean {m}"
            );
        }
        assert!((z_for(0.99) - 2.5758).abs() < 1e-3);
        assert!((z_for(0.95) - 1.9600).abs() < 1e-3);
    }

    #[test]
    fn a_zero_change_is_never_beyond_noise_even_without_a_floor() {
        // Found by the compare_reader fuzz target: a report compared with itself, no floor, one
        // replicate whose interval missed 0 was called "faster" with a change of 0.
        let h = lognormal(41, 200, 560_000.0, 0.5, 1.0);
        let noise = Noise {
            resamples: 1,
            ..plain()
        };
        for stat in [Stat::P50, Stat::P90, Stat::Mean] {
            for key in 0..20 {
                let c = compare_stat(&h, &h, stat, &noise, key).unwrap();
                assert_eq!(c.delta, 0.0);
                assert_eq!(c.verdict, Verdict::NoChange, "{stat:?}, key {key}: {c:?}");
            }
        }
        // Nor is a change against its own interval's direction.
        let c = change(100.0, 110.0, -30.0, -5.0, 0.0, true);
        assert_eq!(c.verdict, Verdict::NoChange, "{c:?}");
    }

    #[test]
    fn stat_names_round_trip() {
        for s in Stat::ALL {
            assert_eq!(Stat::parse(s.name()), Some(s));
        }
        assert_eq!(Stat::parse("p999"), Some(Stat::P999));
        assert_eq!(Stat::parse("p98"), None);
    }
}
