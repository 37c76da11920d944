//! The NNEF reader every hiedge build loads model files with: NNEF's standard operators plus the
//! part of tract's `tract_core` extension that feed-forward classifiers compile to.
//!
//! tract's default reader registers every `tract_core` operator, and a wasm build links the code
//! of every operator a reachable registry names, whether a model uses it or not. hiedge's
//! patched tract-nnef (vendor/README.md) keeps that registry out of reach unless asked for, and
//! this reader asks for the families in [`TRACT_CORE_FAMILIES`] only: what feed-forward
//! classifiers compile to besides NNEF's standard convolutions, pools and arithmetic (einsum,
//! gather, reductions, GELU/SiLU/hard-swish, softmax, RMS norm, int8 convolution and matmul,
//! casts and broadcasts). It leaves out
//! [`LEFT_OUT_FAMILIES`]: recurrent networks, FFT, nested models, integer bit operations, index
//! and sequence operations, resampling inside the model. Leaving them out takes about 0.45 MB
//! (16%) off the client's gzip download (bench/size.md).
//!
//! The same reader runs natively, so `hiedge compile`'s check (it loads every archive it writes
//! this way) refuses a model the browser could not load, naming the operator.

use tract_nnef::framework::Nnef;
use tract_nnef::internal::*;
use tract_nnef::ops::core as families;
use tract_nnef::tract_core::ops;

use crate::error::{Error, Result};

/// The `tract_core` operators the reader registers, by tract-nnef's family (module) name.
pub const TRACT_CORE_FAMILIES: &[&str] = &[
    "round_even, erf, hard_swish, gelu_exact, is_nan (element-wise)",
    "broadcast",
    "cast",
    "downsample",
    "dyn_slice",
    "einsum",
    "gather",
    "gelu_approximate",
    "is_inf",
    "matmul",
    "pow_const",
    "qconv",
    "qmatmul",
    "reduce",
    "rms_norm",
    "shape_of",
    "silu",
    "softmax",
    "source",
];

/// The `tract_core` families the reader leaves out (see the module docs).
pub const LEFT_OUT_FAMILIES: &[&str] = &[
    "scan, lstm, gru (recurrent networks: cells, sequences, epilogues)",
    "fft, stft, complex (Fourier transforms, complex numbers)",
    "submodel (models nested in models)",
    "xor, bitand, bitor, bitxor, bitnot, shl, shr (integer bit operations)",
    "scatter, topk, trilu, range, one_hot, cumsum (index and sequence operations)",
    "resize, multilinear_upsample, nearest_upsample, grid_sample (resampling inside the model)",
    "clamped_swiglu (language-model activation)",
];

/// The `tract_core` registry as hiedge reads it: tract's own registration functions for the
/// families in [`TRACT_CORE_FAMILIES`].
fn tract_core_for_classifiers() -> Registry {
    let mut registry = Registry::new("tract_core");
    registry.register_unit_element_wise("tract_core_round_even", &ops::math::RoundHalfToEven {});
    registry.register_unit_element_wise("tract_core_erf", &ops::math::Erf {});
    registry.register_unit_element_wise("tract_core_hard_swish", &ops::nn::HardSwish {});
    registry.register_unit_element_wise("tract_core_gelu_exact", &ops::nn::GeluExact {});
    registry.register_unit_element_wise("tract_core_is_nan", &ops::math::IsNan {});
    families::broadcast::register(&mut registry);
    families::cast::register(&mut registry);
    families::downsample::register(&mut registry);
    families::dyn_slice::register(&mut registry);
    families::einsum::register(&mut registry);
    families::gather::register(&mut registry);
    families::gelu_approximate::register(&mut registry);
    families::is_inf::register(&mut registry);
    families::matmul::register(&mut registry);
    families::pow_const::register(&mut registry);
    families::qconv::register(&mut registry);
    families::qmatmul::register(&mut registry);
    families::reduce::register(&mut registry);
    families::rms_norm::register(&mut registry);
    families::shape_of::register(&mut registry);
    families::silu::register(&mut registry);
    families::softmax::register(&mut registry);
    families::source::register(&mut registry);
    registry
}

/// The reader: NNEF's standard library and operators, [`tract_core_for_classifiers`], and the
/// loaders for `graph.nnef`, weight (`.dat`) and quantisation files.
pub(crate) fn reader() -> Nnef {
    Nnef {
        stdlib: tract_nnef::framework::stdlib(),
        registries: vec![
            tract_nnef::ops::tract_nnef(),
            tract_core_for_classifiers(),
            crate::runtime::stored_weights::registry(),
        ],
        resource_loaders: vec![GraphNnefLoader.into_boxed(), DatLoader.into_boxed(), GraphQuantLoader.into_boxed()],
        allow_extended_identifier_syntax: false,
        extern_all_constants: false,
    }
}

/// An NNEF archive as a typed model, read by [`reader`]. A graph that needs an operator the
/// reader leaves out is refused as [`Error::UnsupportedModelFormat`], naming the operator.
pub(crate) fn read(bytes: &[u8]) -> Result<TypedModel> {
    reader().model_for_read(&mut &bytes[..]).map_err(|e| {
        const MISSING: &str = "No definition for operator ";
        let missing = e.chain().find_map(|cause| {
            let text = cause.to_string();
            // tract writes the name as `Identifier("tract_core_topk")`.
            text.strip_prefix(MISSING)
                .map(|op| op.trim_start_matches("Identifier(\"").trim_end_matches("\")").to_owned())
        });
        match missing {
            Some(op) => Error::UnsupportedModelFormat(format!(
                "the model needs the operator {op}, which hiedge's model reader (the browser client's \
                 and the Worker's) does not include; it leaves out {}",
                LEFT_OUT_FAMILIES.join("; ")
            )),
            None => Error::Tract(e),
        }
    })
}

#[cfg(all(test, feature = "onnx"))]
mod tests {
    use super::*;
    use tract_nnef::tract_core::ops::array::Trilu;

    /// A one-input f32 model of `shape` through `wire`, as an NNEF archive written by tract's
    /// full writer (the one `hiedge compile` uses).
    fn archive(shape: &[usize], wire: impl Fn(&mut TypedModel, OutletId) -> TractResult<OutletId>) -> Vec<u8> {
        let mut model = TypedModel::default();
        let input = model.add_source("input", f32::fact(shape)).unwrap();
        let output = wire(&mut model, input).unwrap();
        model.select_output_outlets(&[output]).unwrap();
        tract_nnef::nnef().write_to_tar_with_config(&model, Vec::new(), false, true).unwrap()
    }

    #[test]
    fn a_kept_tract_core_operator_loads_and_runs() {
        let bytes = archive(&[1, 3], |m, x| Ok(m.wire_node("erf", ops::math::erf(), &[x])?[0]));
        assert!(String::from_utf8_lossy(&bytes).contains("tract_core_erf"), "the archive uses tract_core_erf");
        let plan = read(&bytes).unwrap().into_optimized().unwrap().into_runnable().unwrap();
        let got = &crate::runtime::model::run_plan(&plan, &[1, 3], &[0.0, 1.0, -2.0]).unwrap()[0];
        // erf(0), erf(1), erf(-2) to 7 digits; tract's erf is an approximation within 1e-5.
        for (g, want) in got.iter().zip([0.0f32, 0.842_700_8, -0.995_322_3]) {
            assert!((g - want).abs() < 1e-5, "erf gave {got:?}");
        }
    }

    #[test]
    fn a_left_out_operator_is_refused_by_name() {
        let bytes = archive(&[4, 4], |m, x| {
            let k = m.add_const("k", tensor0(0i64))?;
            Ok(m.wire_node("trilu", Trilu { upper: true }, &[x, k])?[0])
        });
        assert!(tract_nnef::nnef().model_for_read(&mut &bytes[..]).is_ok(), "tract's full reader reads it");
        let err = read(&bytes).unwrap_err();
        assert_eq!(err.code(), "UnsupportedModelFormat");
        let text = err.to_string();
        assert!(text.contains("needs the operator tract_core_trilu,"), "{text}");
        assert!(text.contains("recurrent networks"), "{text}");
    }

    #[test]
    fn the_families_lists_cover_tracts_whole_registry() {
        // Every `tract_core_*` primitive of tract's registry is either registered here or in a
        // family listed as left out (by name), so the lists in the docs stay true.
        let full = tract_nnef::ops::tract_core();
        let ours = tract_core_for_classifiers();
        let mut unlisted = vec![];
        for id in full.primitives.keys().chain(full.unit_element_wise_ops.iter().map(|(id, _)| id)) {
            let registered =
                ours.primitives.contains_key(id) || ours.unit_element_wise_ops.iter().any(|(o, _)| o == id);
            let short = id.0.trim_start_matches("tract_core_").trim_start_matches("tract_");
            let left_out =
                LEFT_OUT_FAMILIES.iter().any(|f| f.split([',', ' ']).any(|w| !w.is_empty() && short.starts_with(w)));
            if !registered && !left_out {
                unlisted.push(id.0.clone());
            }
        }
        assert!(unlisted.is_empty(), "neither registered nor listed as left out: {unlisted:?}");
    }
}
