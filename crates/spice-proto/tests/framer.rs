//! The streaming framer: split input, both header kinds, oversize rejection.

use spice_proto::framing::*;
use spice_proto::{Message, ProtoError};

fn stream(kind: HeaderKind, n: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut out = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..n {
        let body: Vec<u8> = (0..(i * 37 % 300)).map(|x| (x * 7 + i) as u8).collect();
        write_message(kind, i as u64 + 1, 100 + i as u16, &body, &mut out);
        bodies.push(body);
    }
    (out, bodies)
}

#[test]
fn split_input_yields_every_message() {
    for kind in [HeaderKind::Full, HeaderKind::Mini] {
        let (bytes, bodies) = stream(kind, 20);
        for piece in [1, 2, 5, 17, 1000, bytes.len()] {
            let mut f = Framer::new(kind, 1 << 20);
            let mut got = Vec::new();
            for chunk in bytes.chunks(piece) {
                f.push(chunk);
                while let Some(m) = f.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), bodies.len(), "{kind:?} piece {piece}");
            for (i, m) in got.iter().enumerate() {
                assert_eq!(m.body, bodies[i]);
                assert_eq!(m.msg_type, 100 + i as u16);
                assert_eq!(m.serial, i as u64 + 1);
            }
            assert_eq!(f.buffered(), 0);
        }
    }
}

#[test]
fn oversize_is_rejected_before_the_body_arrives() {
    let mut f = Framer::new(HeaderKind::Mini, 1024);
    let mut hdr = Vec::new();
    MiniHeader {
        msg_type: 101,
        size: u32::MAX,
    }
    .encode(&mut hdr);
    f.push(&hdr);
    let e = f.next_message().unwrap_err();
    assert_eq!(
        e,
        ProtoError::TooLarge {
            size: u32::MAX as u64,
            max: 1024
        }
    );
    // The framer stays failed: the stream position can no longer be trusted.
    f.push(&[0; 10]);
    assert!(f.next_message().is_err());

    // Exactly at the limit is fine.
    let mut f = Framer::new(HeaderKind::Full, 4);
    let mut b = Vec::new();
    write_message(HeaderKind::Full, 9, 3, &[1, 2, 3, 4], &mut b);
    f.push(&b);
    let m = f.next_message().unwrap().unwrap();
    assert_eq!(
        (m.serial, m.msg_type, m.body.as_slice()),
        (9, 3, &[1u8, 2, 3, 4][..])
    );
}

#[test]
fn framed_typed_message_decodes() {
    let msg = spice_proto::InputsClientMsg::MouseMotion {
        dx: -3,
        dy: 4,
        buttons_state: 1,
    };
    let mut wire = Vec::new();
    write_message(
        HeaderKind::Mini,
        0,
        msg.msg_type(),
        &msg.to_body(),
        &mut wire,
    );
    let mut f = Framer::new(HeaderKind::Mini, 4096);
    f.push(&wire[..3]);
    assert!(f.next_message().unwrap().is_none());
    f.push(&wire[3..]);
    let raw = f.next_message().unwrap().unwrap();
    let back = spice_proto::InputsClientMsg::decode(raw.msg_type, &raw.body).unwrap();
    assert_eq!(back, msg);
}
