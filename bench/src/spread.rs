//! The median and range of a figure over the rounds of a run.
//!
//! One run on a shared 2-core machine is noise; the median of a few rounds with the range beside it says both
//! what to expect and how far to trust it.

use serde::Serialize;

/// A figure's median and range over the rounds that measured it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Rounds that measured it.
    pub rounds: usize,
}

impl Spread {
    /// The spread of `values` (NaNs left out); `None` when there is no value.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread {
            median: median_of_sorted(&v),
            min: v[0],
            max: v[v.len() - 1],
            rounds: v.len(),
        })
    }

    /// `median (min..max)`, rounded to whole units.
    pub fn describe(&self) -> String {
        if self.rounds <= 1 {
            format!("{:.0}", self.median)
        } else {
            format!("{:.0} ({:.0}..{:.0})", self.median, self.min, self.max)
        }
    }
}

/// The middle value of sorted values; the mean of the two middle ones for an even count.
fn median_of_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_counts_take_the_middle_value() {
        let s = Spread::of(&[5000.0, 3600.0, 5132.0]).unwrap();
        assert_eq!(
            s,
            Spread {
                median: 5000.0,
                min: 3600.0,
                max: 5132.0,
                rounds: 3
            }
        );
        assert_eq!(s.describe(), "5000 (3600..5132)");
    }

    #[test]
    fn even_counts_average_the_two_middle_values() {
        let s = Spread::of(&[4.0, 1.0, 10.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.rounds), (3.0, 1.0, 10.0, 4));
    }

    #[test]
    fn a_single_round_has_no_range_and_nothing_has_no_spread() {
        let s = Spread::of(&[84.4]).unwrap();
        assert_eq!((s.median, s.min, s.max), (84.4, 84.4, 84.4));
        assert_eq!(s.describe(), "84");
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
    }

    #[test]
    fn an_outlier_moves_the_range_not_the_median() {
        let s = Spread::of(&[240.0, 22_610.0, 230.0]).unwrap();
        assert_eq!((s.median, s.max), (240.0, 22_610.0));
    }
}
