//! The SPICE ticket: a password encrypted with the server's RSA-1024 key.
//!
//! The server sends its public key as a SubjectPublicKeyInfo DER (162 bytes
//! for RSA-1024 with e = 65537) in the link reply; the client answers with one
//! 128-byte RSA-OAEP (SHA-1, MGF1-SHA-1) block holding the NUL-terminated
//! password, as spice-gtk and spice-server do.

use rand::rngs::OsRng;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;

use crate::consts::{
    ENCRYPTED_TICKET_BYTES, MAX_PASSWORD_LENGTH, TICKET_KEY_PAIR_LENGTH, TICKET_PUBKEY_BYTES,
};
use crate::error::{ProtoError, Result};

pub use rsa::RsaPrivateKey as PrivateKey;

/// Makes a fresh RSA-1024 ticket key pair.
pub fn generate_key() -> Result<RsaPrivateKey> {
    RsaPrivateKey::new(&mut OsRng, TICKET_KEY_PAIR_LENGTH)
        .map_err(|e| ProtoError::Ticket(format!("RSA key generation: {e}")))
}

/// The public half as the 162-byte SubjectPublicKeyInfo DER the link reply carries.
pub fn public_key_der(key: &RsaPrivateKey) -> Result<[u8; TICKET_PUBKEY_BYTES]> {
    let doc = RsaPublicKey::from(key)
        .to_public_key_der()
        .map_err(|e| ProtoError::Ticket(format!("public key DER export: {e}")))?;
    let bytes = doc.as_bytes();
    // Only a 1024-bit modulus with a 3-byte exponent gives exactly this size,
    // and the link reply has no room for anything else.
    bytes.try_into().map_err(|_| {
        ProtoError::Ticket(format!(
            "public key DER is {} bytes, the link reply needs {TICKET_PUBKEY_BYTES}",
            bytes.len()
        ))
    })
}

/// The whole key as PKCS#8 DER, for servers that keep one key across restarts.
pub fn private_key_der(key: &RsaPrivateKey) -> Result<Vec<u8>> {
    key.to_pkcs8_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| ProtoError::Ticket(format!("private key DER export: {e}")))
}

/// Loads a PKCS#8 DER private key; it must be RSA-1024 to fit the link reply.
pub fn private_key_from_der(der: &[u8]) -> Result<RsaPrivateKey> {
    let key = RsaPrivateKey::from_pkcs8_der(der)
        .map_err(|e| ProtoError::Ticket(format!("private key DER: {e}")))?;
    public_key_der(&key)?;
    Ok(key)
}

/// Encrypts `password` for the server whose SubjectPublicKeyInfo DER is `pubkey_der`.
pub fn encrypt(pubkey_der: &[u8], password: &str) -> Result<[u8; ENCRYPTED_TICKET_BYTES]> {
    if password.len() > MAX_PASSWORD_LENGTH {
        return Err(ProtoError::PasswordTooLong(password.len()));
    }
    let key = RsaPublicKey::from_public_key_der(pubkey_der)
        .map_err(|e| ProtoError::Ticket(format!("server public key: {e}")))?;
    let mut plain = Vec::with_capacity(password.len() + 1);
    plain.extend_from_slice(password.as_bytes());
    plain.push(0);
    let ct = key
        .encrypt(&mut OsRng, Oaep::new::<Sha1>(), &plain)
        .map_err(|e| ProtoError::Ticket(format!("RSA-OAEP encryption: {e}")))?;
    ct.as_slice().try_into().map_err(|_| {
        ProtoError::Ticket(format!(
            "encrypted ticket is {} bytes, expected {ENCRYPTED_TICKET_BYTES} (key is not RSA-1024)",
            ct.len()
        ))
    })
}

/// Decrypts a ticket and returns the password (the bytes before the first NUL).
pub fn decrypt(key: &RsaPrivateKey, ticket: &[u8]) -> Result<String> {
    if ticket.len() != ENCRYPTED_TICKET_BYTES {
        return Err(ProtoError::Ticket(format!(
            "ticket is {} bytes, expected {ENCRYPTED_TICKET_BYTES}",
            ticket.len()
        )));
    }
    // Blinding keeps decryption time independent of the key-dependent values.
    let plain = key
        .decrypt_blinded(&mut OsRng, Oaep::new::<Sha1>(), ticket)
        .map_err(|e| ProtoError::Ticket(format!("RSA-OAEP decryption: {e}")))?;
    let end = plain.iter().position(|&b| b == 0).unwrap_or(plain.len());
    String::from_utf8(plain[..end].to_vec())
        .map_err(|_| ProtoError::Ticket("password is not UTF-8".into()))
}
