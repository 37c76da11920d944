//! The manifest's validation: every field later code relies on is checked once, when a manifest
//! is read, and an error names the field.

use super::{EeHiThresholds, Manifest, MonitoringBaseline, PerChannel, SourceFile, StageEntry, SCHEMA_VERSION};
use crate::error::{Error, Result};

/// A model cut in two (early-exit stages, split trunk and tail): both files checked, and the
/// features between them a non-empty shape without zeros, of at most [`MAX_VALUES`] values.
fn check_stages(prefix: &str, stages: [(&str, &StageEntry); 2], feature_shape: &[usize]) -> Result<()> {
    for (k, st) in stages {
        check_file(&format!("{prefix}.{k}"), &st.file, &st.sha256)?;
        check_source(&format!("{prefix}.{k}"), st.source.as_ref())?;
    }
    let field = format!("{prefix}.feature_shape");
    if feature_shape.is_empty() || feature_shape.contains(&0) {
        return Err(invalid(field, "must be a non-empty shape without zeros"));
    }
    if checked_len(feature_shape).is_none_or(|n| n > MAX_VALUES) {
        return Err(invalid(field, "has more values than hiedge accepts (16 Mi)"));
    }
    Ok(())
}

/// A `source` entry, when there is one, is a file entry too.
fn check_source(prefix: &str, source: Option<&SourceFile>) -> Result<()> {
    source.map_or(Ok(()), |s| check_file(&format!("{prefix}.source"), &s.file, &s.sha256))
}

/// A model file entry: a plain relative file name and a lower-case hex sha256.
fn check_file(prefix: &str, file: &str, sha256: &str) -> Result<()> {
    if file.trim().is_empty() || file.contains("..") || file.starts_with('/') {
        return Err(invalid(format!("{prefix}.file"), format!("`{file}` is not a plain relative file name")));
    }
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        return Err(invalid(format!("{prefix}.sha256"), "must be 64 lower-case hex digits"));
    }
    Ok(())
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::ManifestInvalid { field: field.into(), reason: reason.into() }
}

/// Most bins a monitoring baseline's histogram may have.
const MAX_MONITOR_BINS: usize = 64;

impl MonitoringBaseline {
    /// Fractions in 0..=1, edges strictly ascending inside (0, 1), one more fraction than edges,
    /// summing to 1 within 1e-4 (they are f32).
    pub fn validate(&self) -> Result<()> {
        const F: &str = "decision.monitoring";
        for (k, f) in &self.offload_fractions {
            if !(f.is_finite() && (0.0..=1.0).contains(f)) {
                return Err(invalid(format!("{F}.offload_fractions.{k}"), format!("{f} is not in 0..=1")));
            }
        }
        let e = &self.p1_edges;
        if e.len() >= MAX_MONITOR_BINS
            || !e.iter().all(|x| x.is_finite() && *x > 0.0 && *x < 1.0)
            || e.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(invalid(
                format!("{F}.p1_edges"),
                format!("must be fewer than {MAX_MONITOR_BINS} strictly ascending numbers inside (0, 1)"),
            ));
        }
        let p = &self.p1_fractions;
        if p.len() != e.len() + 1 {
            return Err(invalid(
                format!("{F}.p1_fractions"),
                format!("has {} values for {} bins", p.len(), e.len() + 1),
            ));
        }
        if !p.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x))
            || (p.iter().map(|x| f64::from(*x)).sum::<f64>() - 1.0).abs() > 1e-4
        {
            return Err(invalid(format!("{F}.p1_fractions"), "must be shares in 0..=1 that sum to 1"));
        }
        Ok(())
    }
}

/// Most values an input or feature tensor may have (16 Mi).
const MAX_VALUES: usize = 16 * 1024 * 1024;

/// The number of values of a shape, `None` on overflow.
fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

impl Manifest {
    /// Checks every field that later code relies on; the error names the field.
    pub fn validate(&self) -> Result<()> {
        self.validate_schema_version()?;
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        self.validate_input()?;
        self.validate_classes()?;
        self.validate_models()?;
        if let Some(ee) = &self.early_exit {
            check_stages("early_exit", [("stage1", &ee.stage1), ("stage2", &ee.stage2)], &ee.feature_shape)?;
        }
        if let Some(sp) = &self.split {
            check_stages("split", [("trunk", &sp.trunk), ("tail", &sp.tail)], &sp.feature_shape)?;
        }
        self.validate_decision()
    }

    /// A version this crate reads, and no schema 2 field in a schema 1 manifest.
    fn validate_schema_version(&self) -> Result<()> {
        if !(1..=SCHEMA_VERSION).contains(&self.schema_version) {
            return Err(invalid(
                "schema_version",
                format!("is {}, this version of hiedge reads 1 to {SCHEMA_VERSION}", self.schema_version),
            ));
        }
        if self.schema_version < 2 {
            let per_channel = |p: &PerChannel| matches!(p, PerChannel::Each(_));
            let v2 = [
                ("input.color", self.input.color.is_some()),
                ("input.resize", self.input.resize.is_some()),
                ("input.normalize.mean", per_channel(&self.input.normalize.mean)),
                ("input.normalize.std", per_channel(&self.input.normalize.std)),
            ];
            if let Some((field, _)) = v2.iter().find(|(_, used)| *used) {
                return Err(invalid(
                    *field,
                    "is a schema_version 2 field (per-channel values too): set schema_version to 2",
                ));
            }
        }
        Ok(())
    }

    /// At least two classes, none empty, none twice.
    fn validate_classes(&self) -> Result<()> {
        if self.classes.len() < 2 {
            return Err(invalid("classes", format!("needs at least 2 classes, has {}", self.classes.len())));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.trim().is_empty() {
                return Err(invalid(format!("classes[{i}]"), "must not be empty"));
            }
            if self.classes[..i].contains(c) {
                return Err(invalid(format!("classes[{i}]"), format!("`{c}` appears twice")));
            }
        }
        Ok(())
    }

    /// At least one model; each a plain file with its sha256, an input name and an accuracy in 0..=1.
    fn validate_models(&self) -> Result<()> {
        if self.models.is_empty() {
            return Err(invalid("models", "must list at least one model"));
        }
        for (name, m) in &self.models {
            let f = |k: &str| format!("models.{name}.{k}");
            check_file(&format!("models.{name}"), &m.file, &m.sha256)?;
            check_source(&format!("models.{name}"), m.source.as_ref())?;
            if let Some(parts) = &m.parts {
                if parts.len() < 2 {
                    return Err(invalid(f("parts"), "a model in parts has at least two"));
                }
                for (i, part) in parts.iter().enumerate() {
                    check_file(&format!("models.{name}.parts[{i}]"), &part.file, &part.sha256)?;
                }
            }
            if m.input_name.is_empty() {
                return Err(invalid(f("input_name"), "must not be empty"));
            }
            if let Some(a) = m.test_accuracy.filter(|a| !(0.0..=1.0).contains(a)) {
                return Err(invalid(f("test_accuracy"), format!("{a} is not in 0..=1")));
            }
        }
        Ok(())
    }

    /// The calibrated decision module: finite weights and thresholds, a positive temperature,
    /// probabilities in 0..=1, EE-HI thresholds in order.
    fn validate_decision(&self) -> Result<()> {
        let Some(d) = &self.decision else { return Ok(()) };
        if let Some(sp) = &d.split {
            if !(sp.exit.is_finite() && (0.0..=1.0).contains(&sp.exit)) {
                return Err(invalid("decision.split.exit", format!("{} is not in 0..=1", sp.exit)));
            }
        }
        if !(d.temperature.is_finite() && d.temperature > 0.0) {
            return Err(invalid("decision.temperature", format!("{} is not a positive number", d.temperature)));
        }
        let l = d.logistic_top2;
        if ![l.bias, l.w1, l.w2].iter().all(|v| v.is_finite()) {
            return Err(invalid("decision.logistic_top2", "weights must be finite numbers"));
        }
        if let Some(ee) = &d.early_exit {
            ee.thresholds.validate().map_err(|reason| invalid("decision.early_exit.thresholds", reason))?;
        }
        for (k, t) in &d.thresholds {
            if !t.is_finite() {
                return Err(invalid(format!("decision.thresholds.{k}"), "must be a finite number"));
            }
        }
        if let Some(m) = &d.monitoring {
            m.validate()?;
        }
        Ok(())
    }

    fn validate_input(&self) -> Result<()> {
        let s = &self.input.shape;
        if s.len() != 4 {
            return Err(invalid(
                "input.shape",
                format!("must have 4 dimensions (N, C, H, W or N, H, W, C), has {}", s.len()),
            ));
        }
        if s[0] != 1 {
            return Err(invalid("input.shape", format!("batch dimension must be 1, is {}", s[0])));
        }
        if s.contains(&0) {
            return Err(invalid("input.shape", "no dimension may be 0"));
        }
        match checked_len(s) {
            Some(n) if n <= MAX_VALUES => {}
            _ => return Err(invalid("input.shape", format!("{s:?} has more values than hiedge accepts (16 Mi)"))),
        }
        let channels = self.input.channels();
        if let Some(color) = self.input.color {
            if color.channels() != channels {
                return Err(invalid(
                    "input.color",
                    format!("{color:?} needs {} channel(s) but input.shape has {channels}", color.channels()),
                ));
            }
        }
        let norm = &self.input.normalize;
        for (field, values) in [("input.normalize.mean", &norm.mean), ("input.normalize.std", &norm.std)] {
            if let PerChannel::Each(v) = values {
                if v.len() != channels {
                    return Err(invalid(
                        field,
                        format!("has {} values but the input has {channels} channels", v.len()),
                    ));
                }
            }
        }
        if let Some(std) = norm.std.values().iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(invalid("input.normalize.std", format!("{std} is not a positive number")));
        }
        if !norm.scale.is_finite() || norm.scale == 0.0 {
            return Err(invalid("input.normalize.scale", format!("{} is not a non-zero number", norm.scale)));
        }
        if !norm.mean.values().iter().all(|m| m.is_finite()) {
            return Err(invalid("input.normalize.mean", "must be finite numbers"));
        }
        for channel in 0..channels {
            for pixel in [0.0f32, 255.0] {
                let value = norm.apply(pixel, channel);
                if !value.is_finite() {
                    return Err(invalid(
                        "input.normalize",
                        format!("pixel value {pixel} normalises to {value}: scale, mean and std overflow f32"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl EeHiThresholds {
    /// Checks `0 <= offload <= exit <= 1` and `0 <= hi <= 1`; the reason when not.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let ok = |t: f32| t.is_finite() && (0.0..=1.0).contains(&t);
        if !(ok(self.exit) && ok(self.offload) && ok(self.hi)) {
            return Err(format!("ee_hi thresholds must be in 0..=1, are {self:?}"));
        }
        if self.offload > self.exit {
            return Err(format!(
                "ee_hi offload threshold {} must not exceed the exit threshold {}",
                self.offload, self.exit
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{edit, field_of};
    use super::super::Manifest;

    #[test]
    fn names_the_invalid_field() {
        assert_eq!(field_of(&edit(|v| v["schema_version"] = 3.into())), "schema_version");
        assert_eq!(field_of(&edit(|v| v["schema_version"] = 0.into())), "schema_version");
        assert_eq!(field_of(&edit(|v| v["input"]["shape"] = serde_json::json!([2, 1, 28, 28]))), "input.shape");
        assert_eq!(field_of(&edit(|v| v["input"]["shape"] = serde_json::json!([1, 28, 28]))), "input.shape");
        assert_eq!(field_of(&edit(|v| v["input"]["shape"] = serde_json::json!([1, 0, 28, 28]))), "input.shape");
        assert_eq!(field_of(&edit(|v| v["input"]["normalize"]["std"] = 0.into())), "input.normalize.std");
        // Seeds of the manifest fuzz target: a shape whose product overflows usize, and a normalisation
        // that overflows f32.
        let huge = serde_json::json!([1, u64::MAX / 2, 4, 4]);
        assert_eq!(field_of(&edit(|v| v["input"]["shape"] = huge.clone())), "input.shape");
        assert_eq!(field_of(&edit(|v| v["input"]["normalize"]["std"] = 1e-40.into())), "input.normalize");
        assert_eq!(field_of(&edit(|v| v["classes"] = serde_json::json!(["a"]))), "classes");
        assert_eq!(field_of(&edit(|v| v["classes"] = serde_json::json!(["a", "b", "a"]))), "classes[2]");
        assert_eq!(field_of(&edit(|v| v["models"] = serde_json::json!({}))), "models");
        assert_eq!(field_of(&edit(|v| v["models"]["tiny"]["sha256"] = "abc".into())), "models.tiny.sha256");
        assert_eq!(field_of(&edit(|v| v["models"]["tiny"]["file"] = "../x.onnx".into())), "models.tiny.file");
        assert_eq!(field_of(&edit(|v| v["models"]["tiny"]["test_accuracy"] = 1.5.into())), "models.tiny.test_accuracy");
        assert_eq!(field_of(&edit(|v| v["decision"]["temperature"] = (-1).into())), "decision.temperature");
        let monitoring = |m: serde_json::Value| edit(move |v| v["decision"]["monitoring"] = m.clone());
        let good = serde_json::json!({"samples": 10, "offload_fractions": {"max_prob": 0.2}, "p1_edges": [0.5, 0.9], "p1_fractions": [0.3, 0.3, 0.4]});
        assert!(Manifest::from_json(&monitoring(good.clone())).is_ok());
        let mut bad = good.clone();
        bad["p1_edges"] = serde_json::json!([0.9, 0.5]);
        assert_eq!(field_of(&monitoring(bad)), "decision.monitoring.p1_edges");
        let mut bad = good.clone();
        bad["p1_fractions"] = serde_json::json!([0.5, 0.5]);
        assert_eq!(field_of(&monitoring(bad)), "decision.monitoring.p1_fractions");
        let mut bad = good.clone();
        bad["p1_fractions"] = serde_json::json!([0.5, 0.5, 0.5]);
        assert_eq!(field_of(&monitoring(bad)), "decision.monitoring.p1_fractions");
        let mut bad = good;
        bad["offload_fractions"]["max_prob"] = 1.5.into();
        assert_eq!(field_of(&monitoring(bad)), "decision.monitoring.offload_fractions.max_prob");
    }
}
