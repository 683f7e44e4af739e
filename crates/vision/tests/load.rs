//! `load_image` on good files and on every kind of bad one: each bad file is an error that
//! names it, never a panic.

use std::fs;
use std::path::PathBuf;

use image::{ImageFormat, Rgb, RgbImage};
use kestrel_vision::{load_image, VisionError};

/// A fresh directory under the system temp dir, private to this test process and `name`.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kestrel-vision-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([x as u8, y as u8, (x * 7 + y * 3) as u8])
    })
}

fn png_bytes(image: &RgbImage) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, ImageFormat::Png).unwrap();
    bytes.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A well-formed PNG header (signature and IHDR with a valid CRC) declaring
/// `width` x `height` 8-bit RGB pixels, with no pixel data after it.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // depth 8, RGB, deflate, adaptive filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png
}

/// A chunk: length, type, data, CRC of type and data.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut body = kind.to_vec();
    body.extend(data);
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend(&body);
    chunk.extend(crc32(&body).to_be_bytes());
    chunk
}

/// [`png_header`] followed by a little pixel data (one zero byte, zlib-compressed) and the
/// end chunk: what a hostile "decompression bomb" looks like to the decoder.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut png = png_header(width, height);
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    ));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

#[test]
fn png_round_trips() {
    let dir = temp_dir("round-trip");
    let path = dir.join("gradient.png");
    let image = gradient(37, 23);
    fs::write(&path, png_bytes(&image)).unwrap();
    assert_eq!(load_image(&path).unwrap(), image);
}

#[test]
fn format_comes_from_the_content_not_the_name() {
    let dir = temp_dir("misnamed");
    let path = dir.join("really_a_png.jpg");
    let image = gradient(5, 4);
    fs::write(&path, png_bytes(&image)).unwrap();
    assert_eq!(load_image(&path).unwrap(), image);
}

#[test]
fn grey_png_becomes_rgb() {
    let dir = temp_dir("grey");
    let path = dir.join("grey.png");
    let grey = image::GrayImage::from_fn(4, 3, |x, y| image::Luma([(x * 40 + y) as u8]));
    grey.save(&path).unwrap();
    let rgb = load_image(&path).unwrap();
    for (x, y, px) in rgb.enumerate_pixels() {
        let v = grey.get_pixel(x, y).0[0];
        assert_eq!(px.0, [v, v, v]);
    }
}

#[test]
fn jpeg_decodes() {
    let dir = temp_dir("jpeg");
    let path = dir.join("solid.jpg");
    RgbImage::from_pixel(16, 16, Rgb([200, 100, 50]))
        .save(&path)
        .unwrap();
    let image = load_image(&path).unwrap();
    assert_eq!(image.dimensions(), (16, 16));
    for px in image.pixels() {
        for (got, want) in px.0.iter().zip([200u8, 100, 50]) {
            assert!(got.abs_diff(want) <= 3, "{:?}", px.0);
        }
    }
}

#[test]
fn missing_file() {
    let path = temp_dir("missing").join("nowhere.png");
    let err = load_image(&path).unwrap_err();
    assert!(matches!(err, VisionError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nowhere.png"), "{err}");
}

#[test]
fn directory() {
    let dir = temp_dir("directory");
    let err = load_image(&dir).unwrap_err();
    assert!(matches!(err, VisionError::Io { .. }), "{err:?}");
}

#[test]
fn text_file_named_png() {
    let path = temp_dir("text").join("notes.png");
    fs::write(&path, "these are not pixels\n").unwrap();
    let err = load_image(&path).unwrap_err();
    assert!(matches!(err, VisionError::NotAnImage { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.png"), "{err}");
}

#[test]
fn empty_file() {
    let path = temp_dir("empty").join("empty.png");
    fs::write(&path, "").unwrap();
    let err = load_image(&path).unwrap_err();
    assert!(matches!(err, VisionError::NotAnImage { .. }), "{err:?}");
}

#[test]
fn other_image_format() {
    let path = temp_dir("gif").join("anim.gif");
    fs::write(&path, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let err = load_image(&path).unwrap_err();
    assert!(
        matches!(err, VisionError::UnsupportedFormat { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Gif"), "{err}");
}

/// A JPEG cut anywhere before its end marker is refused, never decoded as grey-filled; data
/// appended after the marker is tolerated, as in real files.
#[test]
fn truncated_jpeg() {
    let dir = temp_dir("truncated-jpeg");
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(gradient(96, 64))
        .write_to(&mut bytes, ImageFormat::Jpeg)
        .unwrap();
    let bytes = bytes.into_inner();
    for keep in [30, bytes.len() / 3, bytes.len() / 2, bytes.len() - 2] {
        let path = dir.join(format!("cut_{keep}.jpg"));
        fs::write(&path, &bytes[..keep]).unwrap();
        let err = load_image(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("cut_{keep}.jpg")),
            "{keep} bytes: {msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }
    let path = dir.join("trailing.jpg");
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"\0\0 appended by some camera");
    fs::write(&path, trailing).unwrap();
    assert_eq!(load_image(&path).unwrap().dimensions(), (96, 64));
}

#[test]
fn truncated_png() {
    let dir = temp_dir("truncated");
    let bytes = png_bytes(&gradient(64, 64));
    for keep in [8, 20, 33, bytes.len() / 2, bytes.len() - 12] {
        let path = dir.join(format!("cut_{keep}.png"));
        fs::write(&path, &bytes[..keep]).unwrap();
        let err = load_image(&path).unwrap_err();
        assert!(
            matches!(err, VisionError::Decode { .. }),
            "{keep} bytes: {err:?}"
        );
        assert!(
            err.to_string().contains(&format!("cut_{keep}.png")),
            "{err}"
        );
    }
}

#[test]
fn huge_declared_png_is_refused_before_decoding() {
    let dir = temp_dir("huge");
    for (name, bytes) in [
        ("bomb.png", png_declaring(100_000, 100_000)),
        ("header.png", png_header(100_000, 100_000)),
    ] {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        let err = load_image(&path).unwrap_err();
        assert!(
            matches!(
                err,
                VisionError::TooLarge {
                    width: 100_000,
                    height: 100_000,
                    ..
                }
            ),
            "{name}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(name) && message.contains("100000x100000"),
            "{message}"
        );
    }
}

#[test]
fn too_many_pixels_within_the_side_limit() {
    let dir = temp_dir("many");
    let path = dir.join("square.png");
    fs::write(&path, png_declaring(16384, 16384)).unwrap();
    let err = load_image(&path).unwrap_err();
    assert!(matches!(err, VisionError::TooLarge { .. }), "{err:?}");

    // At the limit the header is accepted, and the missing pixel data is what fails.
    let path = dir.join("at_limit.png");
    fs::write(&path, png_declaring(16384, 8192)).unwrap();
    let err = load_image(&path).unwrap_err();
    assert!(matches!(err, VisionError::Decode { .. }), "{err:?}");
}

#[test]
fn huge_declared_jpeg_is_refused_before_decoding() {
    // A real 16 x 16 JPEG whose baseline frame header (SOF0) is patched to 60000 x 60000.
    let mut jpeg = std::io::Cursor::new(Vec::new());
    gradient(16, 16)
        .write_to(&mut jpeg, ImageFormat::Jpeg)
        .unwrap();
    let mut jpeg = jpeg.into_inner();
    let sof = jpeg
        .windows(2)
        .position(|m| m == [0xff, 0xc0])
        .expect("a SOF0 marker");
    // Marker, length (2), precision (1), then height and width.
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xea, 0x60, 0xea, 0x60]);
    let path = temp_dir("huge-jpeg").join("huge.jpg");
    fs::write(&path, jpeg).unwrap();
    let err = load_image(&path).unwrap_err();
    assert!(
        matches!(
            err,
            VisionError::TooLarge {
                width: 60000,
                height: 60000,
                ..
            }
        ),
        "{err:?}"
    );
}
