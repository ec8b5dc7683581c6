//! A fixed-size log-linear histogram of microsecond values: exact below 1024 µs,
//! then 64 buckets per power of two (under 1.6 % error). Recording never allocates.

/// Values below this are counted in their own 1 µs bucket.
const LINEAR: u64 = 1024;
/// log2 of the number of buckets per power of two above [`LINEAR`].
const SUB_BITS: u32 = 6;
/// Powers of two covered above [`LINEAR`] (up to 2^50 µs, far beyond any run).
const OCTAVES: usize = 40;

/// Counts of microsecond values with percentiles.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; LINEAR as usize + (OCTAVES << SUB_BITS)],
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= 10 because v >= LINEAR
    let sub = (v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    let octave = ((e - LINEAR.trailing_zeros()) as usize).min(OCTAVES - 1);
    LINEAR as usize + (octave << SUB_BITS) + sub as usize
}

/// The largest value that lands in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let j = i - LINEAR as usize;
    let e = (j >> SUB_BITS) as u32 + LINEAR.trailing_zeros();
    let sub = (j & ((1 << SUB_BITS) - 1)) as u64;
    let step = 1u64 << (e - SUB_BITS);
    (1u64 << e) + sub * step + step - 1
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Histogram {{ count: {}, p50: {}, p99: {}, max: {} }}",
            self.total,
            self.quantile(0.5),
            self.quantile(0.99),
            self.max
        )
    }
}

impl Histogram {
    /// Counts one value in microseconds.
    #[inline]
    pub fn record(&mut self, us: u64) {
        self.counts[index(us)] += 1;
        self.total += 1;
        self.max = self.max.max(us);
        self.sum += us as u128;
    }

    /// The largest value recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean of the recorded values (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0.0–1.0), as the top of its bucket, capped at the max.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }
}
