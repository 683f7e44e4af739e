//! Decoding PNG and JPEG files to RGB8, with the size checked before any pixel is decoded.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use image::{ImageFormat, ImageReader, Limits, RgbImage};

use crate::VisionError;

/// Longest side [`load_image`] accepts.
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// Most pixels [`load_image`] accepts: 134 megapixels, more than the largest camera photos,
/// and at most 1 GiB while the decoder holds it (16-bit RGBA).
pub const MAX_IMAGE_PIXELS: u64 = 1 << 27;

/// Decodes a PNG or JPEG file to 8-bit RGB.
///
/// The format is recognised from the file's signature, not its name. Grey and alpha images
/// are converted (alpha is dropped, as PIL's `convert("RGB")` does). A header declaring more
/// than [`MAX_IMAGE_SIDE`] per side or [`MAX_IMAGE_PIXELS`] in all is refused before decoding
/// starts, so a small hostile file cannot make the decoder allocate gigabytes. Every error
/// names the file.
pub fn load_image(path: &Path) -> Result<RgbImage, VisionError> {
    let file = File::open(path).map_err(|source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(file, path, MAX_IMAGE_PIXELS)
}

/// Decodes a PNG or JPEG image held in memory, as [`load_image`] does a file; `name` names it
/// in errors. At most `max_pixels` pixels are accepted (and never more than
/// [`MAX_IMAGE_PIXELS`]), so a caller that knows its images are small can bound the memory a
/// hostile header makes the decoder take.
pub fn decode_image(bytes: &[u8], name: &Path, max_pixels: u64) -> Result<RgbImage, VisionError> {
    decode(
        std::io::Cursor::new(bytes),
        name,
        max_pixels.min(MAX_IMAGE_PIXELS),
    )
}

fn decode<R: Read + Seek>(
    mut source: R,
    path: &Path,
    max_pixels: u64,
) -> Result<RgbImage, VisionError> {
    let io_error = |source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    };
    let decode_error = |source| VisionError::Decode {
        path: path.to_path_buf(),
        source,
    };

    let mut start = Vec::with_capacity(24);
    source
        .by_ref()
        .take(24)
        .read_to_end(&mut start)
        .map_err(io_error)?;
    let format = match image::guess_format(&start) {
        Ok(format @ (ImageFormat::Png | ImageFormat::Jpeg)) => format,
        Ok(other) => {
            return Err(VisionError::UnsupportedFormat {
                path: path.to_path_buf(),
                format: format!("{other:?}"),
            })
        }
        Err(_) => {
            return Err(VisionError::NotAnImage {
                path: path.to_path_buf(),
            })
        }
    };
    let check = |(width, height): (u32, u32)| {
        if width > MAX_IMAGE_SIDE
            || height > MAX_IMAGE_SIDE
            || u64::from(width) * u64::from(height) > max_pixels
        {
            return Err(VisionError::TooLarge {
                path: path.to_path_buf(),
                width,
                height,
                max_pixels,
            });
        }
        Ok(())
    };

    // The PNG decoder reads on to the first pixel data before it reports the size, so a
    // file cut after its header would otherwise be refused as truncated, not as too large.
    if let Some(size) = png_declared_size(&start) {
        check(size)?;
    }
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(&mut source).map_err(io_error)? {
        return Err(VisionError::Truncated {
            path: path.to_path_buf(),
        });
    }
    source.rewind().map_err(io_error)?;
    let size = ImageReader::with_format(BufReader::new(&mut source), format)
        .into_dimensions()
        .map_err(decode_error)?;
    check(size)?;
    let (width, height) = size;

    source.rewind().map_err(io_error)?;
    let mut reader = ImageReader::with_format(BufReader::new(source), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    // Room for the largest accepted image in the widest decoded pixel type (RGBA, 16 bits),
    // which the default of 512 MiB would refuse.
    limits.max_alloc = Some(max_pixels * 8);
    reader.limits(limits);
    let image = reader.decode().map_err(decode_error)?;
    log::debug!(
        "{}: {format:?} {width}x{height} {:?}",
        path.display(),
        image.color()
    );
    Ok(image.into_rgb8())
}

/// Width and height from the IHDR chunk, which the PNG format requires to come first.
/// Whether the last few kilobytes of a JPEG hold its end-of-image marker `FF D9`. The decoder
/// fills a cut-off scan with grey and reports success, so a truncated photo would otherwise be
/// classified as if it were whole. Inside compressed data every `FF` is followed by `00` or a
/// restart marker, so `FF D9` there is the real end; tools may append a little after it.
fn jpeg_has_end_marker<R: Read + Seek>(file: &mut R) -> std::io::Result<bool> {
    const TAIL: u64 = 4096;
    let len = file.seek(std::io::SeekFrom::End(0))?;
    file.seek(std::io::SeekFrom::Start(len.saturating_sub(TAIL)))?;
    let mut tail = Vec::with_capacity(TAIL as usize);
    file.take(TAIL).read_to_end(&mut tail)?;
    Ok(tail.windows(2).any(|w| w == [0xFF, 0xD9]))
}

fn png_declared_size(start: &[u8]) -> Option<(u32, u32)> {
    let ihdr = start.get(12..24)?;
    if &ihdr[..4] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&ihdr[4..8]), be(&ihdr[8..12])))
}
