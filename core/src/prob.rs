//! Probability maths, the bottom layer: softmax, argmax, the top two probabilities, the logistic
//! function, and the check that a vector is a probability distribution. Depends on nothing but
//! [`Error`](crate::Error).
//!
//! ```
//! use hiedge_core::prob::{argmax, softmax, top2, validate_probs};
//! let p = softmax(&[2.0, 1.0, 0.0], 1.0);
//! assert_eq!(argmax(&p), 0);
//! assert!(top2(&p).0 > top2(&p).1);
//! assert!(validate_probs(&p).is_ok() && validate_probs(&[2.0, 3.0]).is_err());
//! ```

use crate::error::{Error, Result};

/// Numerically stable softmax of `logits / temperature` (a temperature that is not a positive
/// number counts as 1).
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let t = if temperature.is_finite() && temperature > 0.0 { temperature } else { 1.0 };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| ((l - max) / t).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Index of the largest value; the first one on ties; 0 for an empty slice.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// The largest and second largest probability (`p2 = 0` for a single class; `p1 == p2` on a tie).
pub fn top2(probs: &[f32]) -> (f32, f32) {
    let (mut p1, mut p2) = (f32::NEG_INFINITY, 0.0f32);
    for &p in probs {
        if p > p1 {
            p2 = p1.max(0.0);
            p1 = p;
        } else if p > p2 {
            p2 = p;
        }
    }
    (p1.max(0.0), p2)
}

/// `1 / (1 + e^-x)`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Checks that `probs` is a probability vector: non-empty, finite, each in `0..=1`, summing to 1
/// (within 1e-3, so f32 softmax outputs pass and logits do not).
pub fn validate_probs(probs: &[f32]) -> Result<()> {
    if probs.is_empty() {
        return Err(Error::InvalidProbabilities("the probability vector is empty".into()));
    }
    if let Some((i, p)) = probs.iter().enumerate().find(|(_, p)| !p.is_finite()) {
        return Err(Error::InvalidProbabilities(format!("probability {i} is {p}, not a finite number")));
    }
    if let Some((i, p)) = probs.iter().enumerate().find(|(_, p)| !(-1e-6..=1.0 + 1e-6).contains(*p)) {
        return Err(Error::InvalidProbabilities(format!("probability {i} is {p}, outside 0..=1")));
    }
    let sum: f32 = probs.iter().sum();
    if (sum - 1.0).abs() > 1e-3 {
        return Err(Error::InvalidProbabilities(format!(
            "probabilities sum to {sum}, not 1 (pass softmax outputs, not logits)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_temperature_flattens() {
        let p = softmax(&[1.0, 2.0, 3.0], 1.0);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
        let hot = softmax(&[1.0, 2.0, 3.0], 4.0);
        assert!(hot[2] < p[2]);
        let big = softmax(&[1000.0, 0.0], 1.0);
        assert_eq!(big, vec![1.0, 0.0]);
    }

    #[test]
    fn argmax_takes_first_on_ties() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn single_class_and_ties() {
        assert_eq!(top2(&[1.0]), (1.0, 0.0));
        assert_eq!(top2(&[0.5, 0.5]), (0.5, 0.5));
        assert_eq!(top2(&[0.2, 0.5, 0.3]), (0.5, 0.3));
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(validate_probs(&[]).unwrap_err().to_string().contains("empty"));
        assert!(validate_probs(&[f32::NAN, 1.0]).unwrap_err().to_string().contains("not a finite number"));
        assert!(validate_probs(&[1.5, -0.5]).unwrap_err().to_string().contains("outside 0..=1"));
        assert!(validate_probs(&[0.5, 0.9]).unwrap_err().to_string().contains("not logits"));
        assert!(validate_probs(&[0.25; 4]).is_ok());
        assert_eq!(sigmoid(0.0), 0.5);
    }
}
