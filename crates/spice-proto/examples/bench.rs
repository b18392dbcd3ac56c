//! Rough throughput figures for the codec paths a server and client hit most:
//! `cargo run --release -p spice-proto --example bench`.

use std::time::Instant;

use spice_proto::consts::{bitmap_fmt, ropd};
use spice_proto::display::CopyData;
use spice_proto::framing::{write_message, Framer, HeaderKind};
use spice_proto::types::*;
use spice_proto::*;

fn time<T>(label: &str, iters: u32, bytes: usize, mut f: impl FnMut() -> T) {
    let t = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(f());
    }
    let per = t.elapsed() / iters;
    let rate = if bytes > 0 {
        format!(", {:.0} MB/s", bytes as f64 / per.as_secs_f64() / 1e6)
    } else {
        String::new()
    };
    println!("{label}: {per:?} per op{rate}");
}

fn main() {
    let t = Instant::now();
    let key = ticket::generate_key().unwrap();
    println!("RSA-1024 key generation: {:?}", t.elapsed());
    let der = ticket::public_key_der(&key).unwrap();
    time("ticket encrypt", 200, 0, || {
        ticket::encrypt(&der, "password").unwrap()
    });
    let tk = ticket::encrypt(&der, "password").unwrap();
    time("ticket decrypt", 200, 0, || {
        ticket::decrypt(&key, &tk).unwrap()
    });

    let (w, h) = (1024u32, 768u32);
    let msg = DisplayServerMsg::DrawCopy {
        base: DisplayBase {
            surface_id: 0,
            bbox: Rect::new(0, 0, w as i32, h as i32),
            clip: Clip::None,
        },
        copy: CopyData {
            src_bitmap: Some(Box::new(Image {
                id: 1,
                flags: 0,
                width: w,
                height: h,
                data: ImageData::Bitmap(Bitmap {
                    format: bitmap_fmt::BIT32,
                    flags: 0,
                    width: w,
                    height: h,
                    stride: w * 4,
                    palette: None,
                    data: vec![0x5a; (w * h * 4) as usize],
                }),
            })),
            src_area: Rect::new(0, 0, w as i32, h as i32),
            rop_descriptor: ropd::OP_PUT,
            scale_mode: 0,
            mask: QMask::default(),
        },
    };
    let body = msg.to_body();
    time(
        "DRAW_COPY 1024x768x32 raw bitmap encode",
        50,
        body.len(),
        || msg.to_body(),
    );
    time(
        "DRAW_COPY 1024x768x32 raw bitmap decode",
        50,
        body.len(),
        || DisplayServerMsg::decode(msg.msg_type(), &body).unwrap(),
    );

    let small = InputsClientMsg::MouseMotion {
        dx: 1,
        dy: -1,
        buttons_state: 0,
    };
    let mut stream = Vec::new();
    for _ in 0..100_000 {
        write_message(
            HeaderKind::Mini,
            0,
            small.msg_type(),
            &small.to_body(),
            &mut stream,
        );
    }
    time(
        "frame+decode 100k MOUSE_MOTION (mini header)",
        5,
        stream.len(),
        || {
            let mut f = Framer::new(HeaderKind::Mini, 1 << 20);
            let mut n = 0;
            for chunk in stream.chunks(4096) {
                f.push(chunk);
                while let Some(m) = f.next_message().unwrap() {
                    InputsClientMsg::decode(m.msg_type, &m.body).unwrap();
                    n += 1;
                }
            }
            assert_eq!(n, 100_000);
        },
    );
}
