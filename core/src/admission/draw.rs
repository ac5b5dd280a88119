//! The draw at a room's opening: the order in which the pre-queued places are admitted.
//!
//! The places that joined before `opens_at` have seqs `1..=places` (join order). At the opening one seed of
//! 32 random bytes is drawn by Postgres and recorded with the room (`waiting_rooms.draw_seed`); the order
//! is then a pure function of it: the places sorted by `sha256(seed || seq as 8 bytes big-endian)`, ties
//! (never seen with 256-bit keys) by seq. The place at rank `r` gets line number `r`; places that joined
//! after the opening keep line number `seq`, so they follow in join order.
//!
//! Why a recorded seed rather than a key derived from the server secret: the order does not exist before
//! the opening (nobody, operator included, can know or steer it in advance), and after it anyone holding the
//! seed can recompute it, in Rust or in SQL (see [`Draw::METHOD_SQL`]), so it can be audited. Every api and
//! worker process computes the same order from the same row, and nothing per place is written at the draw:
//! the opening is one row update however long the pre-queue.

use sha2::{Digest, Sha256};

/// A recorded draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    pub seed: [u8; 32],
    /// The pre-queued places: seqs `1..=places`.
    pub places: i64,
}

/// The order a draw gives, both ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawOrder {
    /// `seq_of_line[r - 1]` is the seq of the place at line number `r` (r in `1..=places`).
    seq_of_line: Vec<i64>,
    /// `line_of_seq[s - 1]` is the line number of seq `s`.
    line_of_seq: Vec<i64>,
}

/// The sort key of one place.
pub fn draw_key(seed: &[u8; 32], seq: i64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(seq.to_be_bytes());
    h.finalize().into()
}

impl Draw {
    /// The words the admin figures show as `method`: enough to recompute the order.
    pub const METHOD_SQL: &'static str = "SELECT seq, row_number() OVER (ORDER BY sha256(draw_seed || int8send(seq)), seq) AS line_no FROM queue_entries JOIN waiting_rooms USING (concert_id) WHERE concert_id = $1 AND seq <= draw_places";

    /// Reads a recorded seed (32 bytes) and place count.
    pub fn from_parts(seed: &[u8], places: i64) -> Option<Self> {
        let seed: [u8; 32] = seed.try_into().ok()?;
        (places >= 0).then_some(Self { seed, places })
    }

    /// How the order was drawn, in words, with the seed: the `method` of the admin figures.
    pub fn method(&self) -> String {
        let hex: String = self.seed.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "places 1..={} (join order before the opening) sorted by sha256(seed || seq as 8-byte big-endian), \
             ties by seq; the rank is the line number; later joins follow in join order. seed (32 bytes drawn by \
             the database at the opening) = {hex}; in SQL: {}",
            self.places,
            Self::METHOD_SQL
        )
    }

    /// Computes the order: one SHA-256 per place and a sort (about 30 ms for 100,000 places, optimised).
    pub fn order(&self) -> DrawOrder {
        let n = usize::try_from(self.places).unwrap_or(0);
        let mut keyed: Vec<([u8; 32], i64)> = (1..=n as i64)
            .map(|seq| (draw_key(&self.seed, seq), seq))
            .collect();
        keyed.sort_unstable();
        let seq_of_line: Vec<i64> = keyed.into_iter().map(|(_, seq)| seq).collect();
        let mut line_of_seq = vec![0; n];
        for (i, &seq) in seq_of_line.iter().enumerate() {
            line_of_seq[(seq - 1) as usize] = i as i64 + 1;
        }
        DrawOrder {
            seq_of_line,
            line_of_seq,
        }
    }
}

impl DrawOrder {
    /// The identity: a room that was never drawn (line number = seq).
    pub fn none() -> Self {
        Self {
            seq_of_line: Vec::new(),
            line_of_seq: Vec::new(),
        }
    }

    /// How many places the draw ordered.
    pub fn places(&self) -> i64 {
        self.seq_of_line.len() as i64
    }

    /// The line number of a place (its seq beyond the draw).
    pub fn line(&self, seq: i64) -> i64 {
        match usize::try_from(seq - 1) {
            Ok(i) if i < self.line_of_seq.len() => self.line_of_seq[i],
            _ => seq,
        }
    }

    /// The seq of the place at a line number (the line number beyond the draw).
    pub fn seq(&self, line: i64) -> i64 {
        match usize::try_from(line - 1) {
            Ok(i) if i < self.seq_of_line.len() => self.seq_of_line[i],
            _ => line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(i: u64) -> [u8; 32] {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&i.to_le_bytes());
        s[8] = 0xa5;
        s
    }

    #[test]
    fn an_order_is_a_permutation_and_deterministic() {
        let draw = Draw {
            seed: seed(7),
            places: 1000,
        };
        let order = draw.order();
        assert_eq!(order, draw.order(), "the same seed gives the same order");
        let mut seqs: Vec<i64> = (1..=1000).map(|l| order.seq(l)).collect();
        for (l, &s) in seqs.iter().enumerate() {
            assert_eq!(order.line(s), l as i64 + 1, "line and seq are inverse");
        }
        assert_ne!(seqs, (1..=1000).collect::<Vec<_>>(), "shuffled");
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>(), "a permutation");
        assert_eq!(order.line(1001), 1001, "later joins keep their seq");
        assert_eq!(order.seq(1500), 1500);
        assert_ne!(
            Draw {
                seed: seed(8),
                places: 1000
            }
            .order(),
            order,
            "another seed, another order"
        );
    }

    #[test]
    fn an_empty_draw_is_the_identity() {
        let order = Draw {
            seed: seed(1),
            places: 0,
        }
        .order();
        assert_eq!(order, DrawOrder::none());
        assert_eq!(order.line(3), 3);
        assert!(Draw::from_parts(&[0; 31], 3).is_none());
        assert!(Draw::from_parts(&[0; 32], 3).is_some());
    }

    /// Every (seq, line) cell is equally likely: 4 places over 24,000 seeds, a chi-square test over the 16
    /// cells, and over the 24 whole orders, each against its critical value at p = 0.001.
    #[test]
    fn orders_are_uniform() {
        const N: usize = 4;
        const DRAWS: u64 = 24_000;
        let mut cells = [[0u64; N]; N];
        let mut perms = std::collections::HashMap::<Vec<i64>, u64>::new();
        for i in 0..DRAWS {
            let order = Draw {
                seed: seed(i),
                places: N as i64,
            }
            .order();
            let seqs: Vec<i64> = (1..=N as i64).map(|l| order.seq(l)).collect();
            for (line, &seq) in seqs.iter().enumerate() {
                cells[(seq - 1) as usize][line] += 1;
            }
            *perms.entry(seqs).or_default() += 1;
        }
        let chi = |observed: &mut dyn Iterator<Item = u64>, expected: f64| -> f64 {
            observed
                .map(|o| (o as f64 - expected).powi(2) / expected)
                .sum()
        };
        // 9 degrees of freedom (a 4x4 table with fixed margins), critical value 27.88 at p = 0.001.
        let cell_chi = chi(
            &mut cells.iter().flatten().copied(),
            DRAWS as f64 / N as f64,
        );
        assert!(cell_chi < 27.88, "seq/line cells: chi-square {cell_chi}");
        assert_eq!(perms.len(), 24, "every order of 4 occurs");
        // 23 degrees of freedom, critical value 49.73 at p = 0.001.
        let perm_chi = chi(&mut perms.values().copied(), DRAWS as f64 / 24.0);
        assert!(perm_chi < 49.73, "whole orders: chi-square {perm_chi}");
    }

    /// Join order does not predict line: over 200 places the rank correlation is near 0 for most seeds.
    #[test]
    fn join_order_does_not_predict_the_line() {
        let n = 200_i64;
        let mut big = 0;
        for i in 0..200 {
            let order = Draw {
                seed: seed(10_000 + i),
                places: n,
            }
            .order();
            let mean = (n + 1) as f64 / 2.0;
            let (mut cov, mut var) = (0.0, 0.0);
            for s in 1..=n {
                let (x, y) = (s as f64 - mean, order.line(s) as f64 - mean);
                cov += x * y;
                var += x * x;
            }
            // Spearman's rho; under independence its sd is 1/sqrt(n - 1) ≈ 0.071.
            if (cov / var).abs() > 0.25 {
                big += 1;
            }
        }
        assert!(
            big <= 2,
            "{big} of 200 draws correlate with join order beyond 3.5 sd"
        );
    }
}
