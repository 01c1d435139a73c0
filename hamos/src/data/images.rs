//! PNG and JPEG image sets: OpenOOD-style image lists and folders of class folders. Images are
//! converted to one channel count (grey or RGB) but never resized.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use hamos_api::{Error, Result};

use super::{data_err, ImageSet};

/// Labels of image lists stay below this.
const MAX_LIST_LABEL: i64 = 1 << 16;

/// A decoded image, CHW, with 1 (grey) or 3 (RGB) channels; alpha is dropped.
struct Decoded {
    channels: usize,
    height: usize,
    width: usize,
    pixels: Vec<u8>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.into(), source }
}

/// Decodes a PNG or JPEG file, told apart by their magic bytes.
fn decode(path: &Path) -> Result<Decoded> {
    let bytes = std::fs::read(path).map_err(io_err("reading", path))?;
    let (samples, width, height, interleaved) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(&bytes).map_err(|e| data_err(path, format!("PNG: {e}")))?
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        decode_jpeg(&bytes).map_err(|e| data_err(path, format!("JPEG: {e}")))?
    } else {
        return Err(data_err(path, "not a PNG or JPEG file"));
    };
    let plane = width * height;
    if interleaved.len() != plane * samples {
        return Err(data_err(path, format!("decoder gave {} bytes for {width}x{height}", interleaved.len())));
    }
    // Grey(+alpha) keeps one channel, RGB(+alpha) three; the alpha sample is skipped.
    let channels = if samples <= 2 { 1 } else { 3 };
    let mut pixels = vec![0u8; channels * plane];
    for (p, px) in interleaved.chunks_exact(samples).enumerate() {
        for c in 0..channels {
            pixels[c * plane + p] = px[c];
        }
    }
    Ok(Decoded { channels, height, width, pixels })
}

/// (samples per pixel, width, height, interleaved 8-bit samples)
type Raw = (usize, usize, usize, Vec<u8>);

fn decode_png(bytes: &[u8]) -> std::result::Result<Raw, String> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Palettes and low bit depths expand to 8-bit samples; 16-bit samples keep their high byte.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let size = reader.output_buffer_size().ok_or("image too large")?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    buf.truncate(info.buffer_size());
    let samples = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("palette not expanded".into()),
    };
    Ok((samples, info.width as usize, info.height as usize, buf))
}

fn decode_jpeg(bytes: &[u8]) -> std::result::Result<Raw, String> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    let info = decoder.info().ok_or("no frame header")?;
    let samples = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => 1,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        other => return Err(format!("pixel format {other:?} is not supported (use 8-bit grey or RGB)")),
    };
    Ok((samples, usize::from(info.width), usize::from(info.height), pixels))
}

/// Converts CHW images (`plane` pixels per channel) from `from` to `to` channels: grey to RGB
/// repeats the plane, RGB to grey takes the ITU-R BT.601 luma.
pub(crate) fn convert_channels(
    pixels: &[u8],
    from: usize,
    to: usize,
    plane: usize,
) -> std::result::Result<Vec<u8>, String> {
    if from == to {
        return Ok(pixels.to_vec());
    }
    if plane == 0 {
        return Err("empty images".into());
    }
    let mut out = Vec::with_capacity(pixels.len() / from.max(1) * to);
    match (from, to) {
        (1, 3) => {
            for image in pixels.chunks_exact(plane) {
                for _ in 0..3 {
                    out.extend_from_slice(image);
                }
            }
        }
        (3, 1) => {
            for image in pixels.chunks_exact(3 * plane) {
                let (r, rest) = image.split_at(plane);
                let (g, b) = rest.split_at(plane);
                out.extend((0..plane).map(|p| {
                    let y = 299 * u32::from(r[p]) + 587 * u32::from(g[p]) + 114 * u32::from(b[p]);
                    ((y + 500) / 1000) as u8
                }));
            }
        }
        _ => {
            return Err(format!("cannot convert {from}-channel images to {to} channels (only grey and RGB)"))
        }
    }
    Ok(out)
}

/// Decodes `entries` (file, label) into one set of `id_shape` (if given; else the first
/// image's size and grey/RGB-ness).
fn assemble(name: String, entries: &[(PathBuf, i64)], id_shape: Option<[usize; 3]>) -> Result<ImageSet> {
    if let Some([c, ..]) = id_shape {
        if c != 1 && c != 3 {
            return Err(Error::Data(format!(
                "{name}: ID images have {c} channels; PNG/JPEG sets need 1 or 3"
            )));
        }
    }
    let mut shape = id_shape;
    let mut pixels = Vec::new();
    for (path, _) in entries {
        let image = decode(path)?;
        let [c, h, w] = *shape.get_or_insert([image.channels, image.height, image.width]);
        if (image.height, image.width) != (h, w) {
            let of = match id_shape {
                Some(_) => "the ID images'".to_string(),
                None => format!("the first image's ({})", entries[0].0.display()),
            };
            return Err(data_err(
                path,
                format!(
                    "image is {}x{} (h x w), {of} size is {h}x{w}; nothing is resized",
                    image.height, image.width
                ),
            ));
        }
        let converted =
            convert_channels(&image.pixels, image.channels, c, h * w).map_err(|e| data_err(path, e))?;
        pixels.extend_from_slice(&converted);
    }
    let Some(shape) = shape else {
        return Err(Error::Data(format!("{name}: no images")));
    };
    let labels: Vec<i64> = entries.iter().map(|(_, l)| *l).collect();
    let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    Ok(ImageSet { name, shape, pixels, labels: Some(labels), classes })
}

/// An OpenOOD-style list: `relative/path.png label` per line, blank lines skipped.
pub(crate) fn load_image_list(root: &Path, list: &Path, id_shape: Option<[usize; 3]>) -> Result<ImageSet> {
    let text = std::fs::read_to_string(list).map_err(io_err("reading image list", list))?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| Error::Data(format!("{}:{}: {why}: `{line}`", list.display(), i + 1));
        // Split at the last blank, so that paths may contain spaces.
        let (file, label) =
            line.rsplit_once(char::is_whitespace).ok_or_else(|| bad("expected `relative/path label`"))?;
        let label: i64 = label.parse().map_err(|_| bad("the label is not an integer"))?;
        // Class counts are dense vectors, so a typo like 1000000000 must not size one.
        if !(0..MAX_LIST_LABEL).contains(&label) {
            return Err(bad(&format!("the label is not in 0..{MAX_LIST_LABEL}")));
        }
        entries.push((root.join(file.trim_end()), label));
    }
    let name = list.file_stem().map_or_else(|| list.display().to_string(), |s| s.to_string_lossy().into());
    assemble(name, &entries, id_shape)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let entry = entry.map_err(io_err("listing", dir))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// A folder of class folders (labels by sorted folder name) of PNG or JPEG files.
pub(crate) fn load_image_folder(root: &Path, id_shape: Option<[usize; 3]>) -> Result<ImageSet> {
    let class_dirs: Vec<PathBuf> = sorted_entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
    if class_dirs.is_empty() {
        return Err(data_err(root, "no class folders"));
    }
    let mut entries = Vec::new();
    for (label, dir) in class_dirs.iter().enumerate() {
        for file in sorted_entries(dir)? {
            let ext = file.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
            if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) && file.is_file() {
                entries.push((file, label as i64));
            }
        }
    }
    let name = root.file_name().map_or_else(|| root.display().to_string(), |s| s.to_string_lossy().into());
    let mut set = assemble(name, &entries, id_shape)?;
    // Every class folder is a class, even one without images (check_id_set reports it).
    set.classes = class_dirs.len();
    Ok(set)
}
