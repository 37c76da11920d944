use crate::internal::*;
use tract_core::ops;

// hiedge patch: the operator families below are `pub mod` (were `mod`), so a reader can
// register a chosen part of the `tract_core` registry.

pub mod broadcast;
pub mod cast;
pub mod clamped_swiglu;
#[cfg(feature = "complex")]
pub mod complex;
pub mod cumsum;
pub mod downsample;
pub mod dyn_slice;
pub mod einsum;
pub mod fft;
pub mod gather;
pub mod gelu_approximate;
pub mod grid_sample;
pub mod gru_cell;
pub mod gru_seq;
pub mod is_inf;
pub mod lstm_cell;
pub mod matmul;
pub mod one_hot;
pub mod pow_const;
pub mod qconv;
pub mod qmatmul;
pub mod range;
pub mod reduce;
pub mod resize;
pub mod rms_norm;
pub mod scan;
pub mod scatter;
pub mod shape_of;
pub mod silu;
pub mod softmax;
pub mod source;
pub mod submodel;
pub mod topk;
pub mod trilu;

pub fn register(registry: &mut Registry) {
    registry.register_unit_element_wise("tract_core_round_even", &ops::math::RoundHalfToEven {});
    registry.register_unit_element_wise("tract_core_erf", &ops::math::Erf {});
    registry.register_unit_element_wise("tract_core_hard_swish", &ops::nn::HardSwish {});
    // hiedge patch: exact (erf) GELU, PyTorch's default `nn.GELU()`, had no NNEF form.
    registry.register_unit_element_wise("tract_core_gelu_exact", &ops::nn::GeluExact {});

    registry.register_binary("tract_core_xor", &ops::logic::Xor {});
    registry.register_binary("tract_core_bitand", &ops::logic::BitAnd {});
    registry.register_binary("tract_core_bitor", &ops::logic::BitOr {});
    registry.register_binary("tract_core_bitxor", &ops::logic::BitXor {});
    registry.register_unit_element_wise("tract_core_bitnot", &ops::logic::BitNot {});

    registry.register_unit_element_wise("tract_core_is_nan", &ops::math::IsNan {});

    registry.register_binary("tract_shl", &ops::math::ShiftLeft);
    registry.register_binary("tract_shr", &ops::math::ShiftRight);
    broadcast::register(registry);
    cast::register(registry);
    clamped_swiglu::register(registry);
    #[cfg(feature = "complex")]
    complex::register(registry);
    cumsum::register(registry);
    downsample::register(registry);
    dyn_slice::register(registry);
    einsum::register(registry);
    fft::register(registry);
    gather::register(registry);
    gelu_approximate::register(registry);
    pow_const::register(registry);
    grid_sample::register(registry);
    gru_cell::register(registry);
    gru_seq::register(registry);
    lstm_cell::register(registry);
    matmul::register(registry);
    one_hot::register(registry);
    qconv::register(registry);
    qmatmul::register(registry);
    reduce::register(registry);
    resize::register(registry);
    rms_norm::register(registry);
    scan::register(registry);
    scatter::register(registry);
    shape_of::register(registry);
    silu::register(registry);
    softmax::register(registry);
    source::register(registry);
    submodel::register(registry);
    range::register(registry);
    topk::register(registry);
    trilu::register(registry);
    is_inf::register(registry);
}
