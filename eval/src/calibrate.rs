//! Fitting the decision module on the calibration set: softmax temperature and `LogisticTop2`.

use hiedge_core::manifest::LogisticParams;
use hiedge_core::prob::{sigmoid, softmax, top2};

use crate::error::{Error, Result};

/// Mean negative log-likelihood of `labels` under `softmax(logits / t)`.
pub fn nll(logits: &[Vec<f32>], labels: &[usize], t: f32) -> f64 {
    let total: f64 = logits
        .iter()
        .zip(labels)
        .map(|(l, &y)| -(softmax(l, t).get(y).copied().unwrap_or(0.0).max(1e-12) as f64).ln())
        .sum();
    total / logits.len().max(1) as f64
}

/// The temperature in `[0.05, 20]` that minimises the NLL (golden-section search on `ln t`).
pub fn fit_temperature(logits: &[Vec<f32>], labels: &[usize]) -> Result<f32> {
    if logits.is_empty() || logits.len() != labels.len() {
        return Err(Error::InvalidData(format!(
            "temperature fit needs as many logit rows as labels (got {} and {})",
            logits.len(),
            labels.len()
        )));
    }
    let f = |x: f64| nll(logits, labels, x.exp() as f32);
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    Ok(((a + b) / 2.0).exp() as f32)
}

/// Fits `P(correct) = sigmoid(bias + w1 p1 + w2 p2)` by Newton's method (logistic regression with a
/// small L2 penalty on the weights so separable data still converges).
pub fn fit_logistic_top2(probs: &[Vec<f32>], correct: &[bool]) -> Result<LogisticParams> {
    if probs.is_empty() || probs.len() != correct.len() {
        return Err(Error::InvalidData(format!(
            "logistic fit needs as many probability rows as outcomes (got {} and {})",
            probs.len(),
            correct.len()
        )));
    }
    let xs: Vec<[f64; 3]> = probs
        .iter()
        .map(|p| {
            let (p1, p2) = top2(p);
            [1.0, p1 as f64, p2 as f64]
        })
        .collect();
    let lambda = 1e-3 * xs.len() as f64;
    let mut w = [0.0f64; 3];
    for _ in 0..100 {
        let mut grad = [0.0f64; 3];
        let mut hess = [[0.0f64; 3]; 3];
        for (x, &y) in xs.iter().zip(correct) {
            let z: f64 = (0..3).map(|i| w[i] * x[i]).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let r = p - if y { 1.0 } else { 0.0 };
            let s = (p * (1.0 - p)).max(1e-9);
            for i in 0..3 {
                grad[i] += r * x[i];
                for j in 0..3 {
                    hess[i][j] += s * x[i] * x[j];
                }
            }
        }
        for i in 1..3 {
            grad[i] += lambda * w[i];
            hess[i][i] += lambda;
        }
        let step = solve3(hess, grad).ok_or_else(|| Error::Fit("logistic regression: singular Hessian".into()))?;
        for i in 0..3 {
            w[i] -= step[i];
        }
        if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-9 {
            break;
        }
    }
    if !w.iter().all(|v| v.is_finite()) {
        return Err(Error::Fit("logistic regression diverged".into()));
    }
    Ok(LogisticParams { bias: w[0] as f32, w1: w[1] as f32, w2: w[2] as f32 })
}

/// `P(correct)` under fitted parameters.
pub fn logistic_score(l: &LogisticParams, probs: &[f32]) -> f32 {
    let (p1, p2) = top2(probs);
    sigmoid(l.bias + l.w1 * p1 + l.w2 * p2)
}

/// Solves a 3x3 system by Gaussian elimination with partial pivoting.
fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-15 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..3 {
            let f = a[row][col] / a[col][col];
            let pivot_row = a[col];
            for (x, p) in a[row].iter_mut().zip(pivot_row).skip(col) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let s: f64 = (row + 1..3).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_recovers_overconfidence() {
        // logits 3x too sharp for labels drawn with the "true" temperature-1 probabilities
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..3000 {
            let base = [2.0f32, 1.0, 0.0];
            let probs = softmax(&base, 1.0);
            let u = ((i * 7919) % 3000) as f32 / 3000.0;
            let y = if u < probs[0] {
                0
            } else if u < probs[0] + probs[1] {
                1
            } else {
                2
            };
            logits.push(base.iter().map(|v| v * 3.0).collect());
            labels.push(y);
        }
        let t = fit_temperature(&logits, &labels).unwrap();
        assert!((t - 3.0).abs() < 0.2, "fitted temperature {t}");
        assert!(fit_temperature(&[], &[]).is_err());
    }

    #[test]
    fn logistic_fit_separates_confident_from_unsure() {
        let mut probs = Vec::new();
        let mut correct = Vec::new();
        for i in 0..2000 {
            let p1 = 0.4 + 0.6 * (i as f32 / 2000.0);
            probs.push(vec![p1, 1.0 - p1]);
            // right with probability rising in p1 (deterministic pattern)
            correct.push(((i * 37) % 100) as f32 / 100.0 < (p1 - 0.3) * 1.4);
        }
        let l = fit_logistic_top2(&probs, &correct).unwrap();
        assert!(logistic_score(&l, &[0.95, 0.05]) > 0.8);
        assert!(logistic_score(&l, &[0.45, 0.55]) < 0.5);
        assert!(fit_logistic_top2(&probs, &correct[..10]).is_err());
    }

    #[test]
    fn solve3_solves() {
        let x = solve3([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 4.0, 0.0]], [2.0, 3.0, 8.0]).unwrap();
        assert_eq!(x, [1.0, 2.0, 1.0]);
        assert!(solve3([[0.0; 3]; 3], [1.0; 3]).is_none());
    }
}
