//! What `classify` accepts: model-sized bytes as they are, or an image source (`ImageData`, a
//! canvas, an image, a video, a video frame, an `ImageBitmap`, a `Blob`) read back as RGBA pixels at
//! its own size. The conversion to the model's input is hiedge-core's (`runtime::image`).

use js_sys::{Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::js::{coded_error, describe};

/// `error.code` for an input `classify` cannot read.
pub const INVALID_INPUT: &str = "InvalidInput";

/// What `classify` and `classifyLocal` accept, for the TypeScript declarations.
pub const IMAGE_INPUT_TS: &str =
    "Uint8Array | ImageData | HTMLCanvasElement | OffscreenCanvas | HTMLImageElement | HTMLVideoElement | ImageBitmap | VideoFrame | Blob";

#[wasm_bindgen]
extern "C" {
    /// `OffscreenCanvas` (window and workers).
    type Offscreen;
    #[wasm_bindgen(constructor, js_class = "OffscreenCanvas", catch)]
    fn new(width: u32, height: u32) -> Result<Offscreen, JsValue>;
    #[wasm_bindgen(method, js_name = getContext)]
    fn get_context(this: &Offscreen, kind: &str, options: &JsValue) -> Option<Context2d>;

    /// Its 2D context.
    type Context2d;
    #[wasm_bindgen(method, js_name = drawImage, catch)]
    fn draw_image(this: &Context2d, image: &JsValue, x: f64, y: f64) -> Result<(), JsValue>;
    #[wasm_bindgen(method, js_name = getImageData, catch)]
    fn get_image_data(this: &Context2d, x: f64, y: f64, w: f64, h: f64) -> Result<web_sys::ImageData, JsValue>;

    #[wasm_bindgen(js_name = createImageBitmap, catch)]
    fn create_image_bitmap(blob: &web_sys::Blob) -> Result<Promise, JsValue>;
}

/// A `classify` input, read.
pub enum Input {
    /// Bytes already in the model's input layout.
    ModelBytes(Vec<u8>),
    /// RGBA pixels of an image of any size.
    Rgba { pixels: Vec<u8>, width: usize, height: usize },
}

fn invalid(message: impl AsRef<str>) -> JsValue {
    coded_error(INVALID_INPUT, &format!("{}; classify takes {IMAGE_INPUT_TS}", message.as_ref()))
}

/// The width and height an image source draws at: natural size for images, video size for
/// videos, display size for video frames, else `width` / `height`.
fn source_size(source: &JsValue) -> Option<(u32, u32)> {
    let number = |k: &str| Reflect::get(source, &k.into()).ok().and_then(|v| v.as_f64()).filter(|v| *v >= 1.0);
    ["naturalWidth", "videoWidth", "displayWidth", "width"]
        .iter()
        .zip(["naturalHeight", "videoHeight", "displayHeight", "height"])
        .find_map(|(w, h)| Some((number(w)? as u32, number(h)? as u32)))
}

/// Refuses an image larger than hiedge-core's `MAX_IMAGE_PIXELS` from its dimensions alone, before
/// a canvas is made for it or its pixels are copied.
fn check_size(width: u32, height: u32) -> Result<(), JsValue> {
    hiedge_core::runtime::image::check_image_size(width as usize, height as usize)
        .map(|_| ())
        .map_err(|e| invalid(e.to_string()))
}

fn rgba_of(data: &web_sys::ImageData) -> Result<Input, JsValue> {
    check_size(data.width(), data.height())?;
    Ok(Input::Rgba { pixels: data.data().0, width: data.width() as usize, height: data.height() as usize })
}

/// Reads an input without waiting: bytes, `ImageData`, or any source a canvas can draw.
pub fn read_now(value: &JsValue) -> Result<Input, JsValue> {
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Ok(Input::ModelBytes(bytes.to_vec()));
    }
    if let Some(data) = value.dyn_ref::<web_sys::ImageData>() {
        return rgba_of(data);
    }
    if value.is_instance_of::<web_sys::Blob>() {
        return Err(invalid("a Blob must be decoded first: use classify(), which does, not classifyLocal()"));
    }
    if !value.is_object() {
        return Err(invalid(format!("got {}", value.js_typeof().as_string().unwrap_or_default())));
    }
    let (width, height) =
        source_size(value).ok_or_else(|| invalid("the image source has no size (not loaded yet?)"))?;
    check_size(width, height)?;
    let canvas =
        Offscreen::new(width, height).map_err(|e| invalid(format!("no OffscreenCanvas here: {}", describe(&e))))?;
    let options = js_sys::Object::new();
    let _ = Reflect::set(&options, &"willReadFrequently".into(), &JsValue::TRUE);
    let ctx = canvas.get_context("2d", &options).ok_or_else(|| invalid("no 2D canvas context"))?;
    ctx.draw_image(value, 0.0, 0.0).map_err(|e| invalid(format!("this object cannot be drawn: {}", describe(&e))))?;
    let data = ctx
        .get_image_data(0.0, 0.0, width as f64, height as f64)
        .map_err(|e| invalid(format!("its pixels cannot be read (a cross-origin image?): {}", describe(&e))))?;
    rgba_of(&data)
}

/// Reads an input, decoding a `Blob` (a `File` too) with `createImageBitmap` first.
pub async fn read(value: JsValue) -> Result<Input, JsValue> {
    if let Some(blob) = value.dyn_ref::<web_sys::Blob>() {
        let promise =
            create_image_bitmap(blob).map_err(|e| invalid(format!("cannot decode the Blob: {}", describe(&e))))?;
        let bitmap =
            JsFuture::from(promise).await.map_err(|e| invalid(format!("cannot decode the Blob: {}", describe(&e))))?;
        return read_now(&bitmap);
    }
    read_now(&value)
}

/// A read input as the model's input bytes: model-sized bytes as they are, an image converted by
/// hiedge-core (size, colour and resize rule of `input`). The length is the caller's to check.
pub fn to_pixels(input: Input, spec: &hiedge_core::manifest::InputSpec) -> Result<Vec<u8>, JsValue> {
    use hiedge_core::runtime::image::{to_model_pixels, Image, PixelFormat};
    match input {
        Input::ModelBytes(bytes) => Ok(bytes),
        Input::Rgba { pixels, width, height } => {
            let image = Image::new(&pixels, width, height, PixelFormat::Rgba).map_err(crate::js::core_error)?;
            to_model_pixels(&image, spec).map_err(crate::js::core_error)
        }
    }
}
