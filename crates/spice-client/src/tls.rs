//! TLS for channel sockets. SPICE wraps each channel's TCP connection to the
//! server's TLS port in TLS before the link stage, so every channel does its own
//! handshake. The server's certificate is checked against a CA file and either
//! the host name (the default) or, like spice-gtk's `host-subject`, an exact
//! certificate subject such as `C=XX,O=Org,CN=name` (then the host name is not
//! checked: that is how hand-overs to a server known by subject work). Like
//! spice-gtk, a certificate without subjectAltName matches a host named by its CN
//! (the certificates SPICE's and QEMU's guides make have only a CN).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use x509_parser::asn1_rs::{Any, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME;
use x509_parser::prelude::FromDer;

use crate::error::ClientError;

/// Where the trusted CAs come from when no CA file is given (Debian's bundle).
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A ready TLS client for one server: trusted CAs and how its certificate is checked.
#[derive(Clone)]
pub struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    host: String,
    ca_file: String,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

fn tls_err(host: &str, reason: impl Into<String>) -> ClientError {
    ClientError::Tls {
        host: host.to_string(),
        reason: reason.into(),
    }
}

impl TlsConnector {
    /// Trusts the CAs in the PEM file `ca_file` ([`SYSTEM_CA_FILE`] when `None`) and
    /// checks the certificate against `host`, or against `host_subject` when given.
    pub fn new(
        host: &str,
        ca_file: Option<&Path>,
        host_subject: Option<&str>,
    ) -> Result<TlsConnector, ClientError> {
        let ca_path: PathBuf = ca_file.map_or_else(|| SYSTEM_CA_FILE.into(), Path::to_path_buf);
        let ca_err = |d: String| tls_err(host, format!("CA file {}: {d}", ca_path.display()));
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(&ca_path).map_err(|e| ca_err(e.to_string()))?;
        for c in certs {
            let c = c.map_err(|e| ca_err(e.to_string()))?;
            roots.add(c).map_err(|e| ca_err(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ca_err("no CA certificate in the file".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ca_err(e.to_string()))?;
        let subject = host_subject
            .map(|s| {
                parse_subject(s).map_err(|e| tls_err(host, format!("host subject {s:?}: {e}")))
            })
            .transpose()?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let verifier = Arc::new(Verifier {
            webpki,
            subject,
            host: bare.to_string(),
        });
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(host, e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let name = ServerName::try_from(bare.to_string())
            .map_err(|e| tls_err(host, format!("not a valid TLS server name: {e}")))?;
        Ok(TlsConnector {
            inner: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            name,
            host: host.to_string(),
            ca_file: ca_path.display().to_string(),
        })
    }

    /// Runs the handshake on a connected socket.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
        self.inner
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| {
                let reason = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(c)) => {
                        format!(
                            "the server's certificate is refused: {}",
                            cert_reason(c, &self.ca_file)
                        )
                    }
                    Some(other) => format!("handshake failed: {other}"),
                    None => format!("handshake failed: {e}"),
                };
                tls_err(&self.host, reason)
            })
    }
}

fn cert_reason(c: &CertificateError, ca_file: &str) -> String {
    match c {
        CertificateError::UnknownIssuer => {
            format!("it is not signed by a CA in {ca_file} (unknown issuer)")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "it is not valid for this host name (use --host-subject to check its subject instead)"
                .into()
        }
        CertificateError::Other(o) => o.to_string(),
        other => format!("{other:?}"),
    }
}

/// The host subject did not match: carried through rustls as the reason.
#[derive(Debug)]
struct SubjectMismatch {
    wanted: String,
    found: String,
}

impl std::fmt::Display for SubjectMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "its subject {:?} does not match the expected host subject {:?}",
            self.found, self.wanted
        )
    }
}

impl std::error::Error for SubjectMismatch {}

/// WebPKI chain checks, with the name check replaced by a subject check when a
/// host subject is set.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    subject: Option<Vec<(String, String)>>,
    /// The host name or address connected to, for the CN fallback.
    host: String,
}

impl Verifier {
    /// spice-gtk's fallback when the certificate has no subjectAltName: the host
    /// is one of the subject's common names (compared without case).
    fn cn_names_host(&self, cert: &[u8]) -> bool {
        has_subject_alt_name(cert) == Some(false)
            && cert_subject(cert).is_some_and(|attrs| {
                attrs
                    .iter()
                    .any(|(k, v)| k == "CN" && v.eq_ignore_ascii_case(&self.host))
            })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        let Some(wanted) = &self.subject else {
            return match r {
                // The name check comes last in webpki: the chain is good.
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) if self.cn_names_host(end_entity.as_ref()) => {
                    Ok(ServerCertVerified::assertion())
                }
                r => r,
            };
        };
        match r {
            Ok(_)
            | Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {}
            Err(e) => return Err(e),
        }
        let found = cert_subject(end_entity.as_ref()).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        if subjects_match(wanted, &found) {
            Ok(ServerCertVerified::assertion())
        } else {
            let show = |v: &[(String, String)]| {
                v.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(SubjectMismatch {
                    wanted: show(wanted),
                    found: show(&found),
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Attribute names as OpenSSL prints them, by dotted OID.
const ATTRS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.42", "GN"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
];

/// The attribute's canonical key: the short name, else the dotted OID.
fn attr_key(name: &str) -> String {
    ATTRS
        .iter()
        .find(|(oid, short)| short.eq_ignore_ascii_case(name) || *oid == name)
        .map_or_else(|| name.to_string(), |(_, s)| s.to_string())
}

/// Parses a subject as spice-gtk takes it: `KEY=VALUE` entries separated by commas,
/// `\` escaping the next character (a comma or a backslash in a value).
pub fn parse_subject(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut entries = Vec::new();
    let mut cur = String::new();
    let mut parts = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.push(chars.next().ok_or("ends with a lone backslash")?),
            ',' => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    for p in parts {
        if p.trim().is_empty() {
            continue;
        }
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("entry {p:?} is not KEY=VALUE"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("entry {p:?} has no key"));
        }
        entries.push((attr_key(k), v.trim().to_string()));
    }
    if entries.is_empty() {
        return Err("no KEY=VALUE entry".into());
    }
    Ok(entries)
}

/// OpenSSL's canonical form for name comparison: trimmed, inner white space
/// collapsed to one space, ASCII lower case.
fn canonical(v: &str) -> String {
    v.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

fn subjects_match(wanted: &[(String, String)], found: &[(String, String)]) -> bool {
    wanted.len() == found.len()
        && wanted
            .iter()
            .zip(found)
            .all(|((wk, wv), (fk, fv))| wk == fk && canonical(wv) == canonical(fv))
}

/// An attribute value as text. x509-parser's own `as_str` leaves out several
/// string types certificates use, so the value is decoded by its tag here: the
/// 8-bit types as UTF-8, TeletexString as Latin-1 (what it holds in practice),
/// BMPString and UniversalString through asn1-rs.
fn attr_text(v: &Any<'_>) -> Option<String> {
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => String::from_utf8(v.data.to_vec()).ok(),
        Tag::T61String => Some(v.data.iter().map(|&c| char::from(c)).collect()),
        // asn1-rs reads a lone trailing byte as a UTF-16 unit: refuse it first.
        Tag::BmpString if v.data.len().is_multiple_of(2) => {
            v.as_bmpstring().ok().map(|s| s.string())
        }
        Tag::UniversalString => v.as_universalstring().ok().map(|s| s.string()),
        _ => None,
    }
}

fn parse_cert(cert: &[u8]) -> Option<X509Certificate<'_>> {
    X509Certificate::from_der(cert).ok().map(|(_, c)| c)
}

/// Whether a DER certificate has a subjectAltName extension.
pub fn has_subject_alt_name(cert: &[u8]) -> Option<bool> {
    Some(
        parse_cert(cert)?
            .extensions()
            .iter()
            .any(|e| e.oid == OID_X509_EXT_SUBJECT_ALT_NAME),
    )
}

/// The subject of a DER certificate as (key, value) attributes in order.
pub fn cert_subject(cert: &[u8]) -> Option<Vec<(String, String)>> {
    parse_cert(cert)?
        .subject()
        .iter_attributes()
        .map(|a| {
            Some((
                attr_key(&a.attr_type().to_id_string()),
                attr_text(a.attr_value())?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_parse_like_spice_gtk_and_compare_canonically() {
        let s = parse_subject("C=IL, L=Raanana, O=Red Hat\\, Inc., CN=my server").unwrap();
        assert_eq!(
            s,
            vec![
                ("C".into(), "IL".into()),
                ("L".into(), "Raanana".into()),
                ("O".into(), "Red Hat, Inc.".into()),
                ("CN".into(), "my server".into()),
            ]
        );
        let found = vec![
            ("C".to_string(), "il".to_string()),
            ("L".to_string(), "Raanana".to_string()),
            ("O".to_string(), "red  hat, inc.".to_string()),
            ("CN".to_string(), " My Server".to_string()),
        ];
        assert!(subjects_match(&s, &found));
        assert!(!subjects_match(&s[..3], &found));
        let mut other = found.clone();
        other[3].1 = "their server".into();
        assert!(!subjects_match(&s, &other));
        assert!(parse_subject("CN").is_err());
        assert!(parse_subject("CN=x\\").is_err());
        assert!(parse_subject(" , ").is_err());
        // Unknown names stay as given, dotted OIDs take the short name.
        assert_eq!(
            parse_subject("commonName=a,2.5.4.3=b").unwrap(),
            vec![("commonName".into(), "a".into()), ("CN".into(), "b".into())]
        );
    }

    /// Made once with `openssl req -x509` (P-256 keys, no private key kept).
    /// With subjectAltName; UTF8String/PrintableString/IA5String attributes.
    const CERT_SAN: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIICfjCCAiWgAwIBAgITB+8jkoZMdwTpydmulpHDr+hcaTAKBggqhkjOPQQDAjCB\n\
hzELMAkGA1UEBhMCWFgxEzARBgNVBAgMClNvbWUgU3RhdGUxDTALBgNVBAcMBFRv\n\
d24xEjAQBgNVBAoMCU9yZywgSW5jLjENMAsGA1UECwwEVW5pdDEVMBMGA1UEAwwM\n\
aG9zdC5leGFtcGxlMRowGAYJKoZIhvcNAQkBFgthQGIuZXhhbXBsZTAgFw0yNjEx\n\
MjYyMzA2MThaGA8yMTI2MTEwMjIzMDYxOFowgYcxCzAJBgNVBAYTAlhYMRMwEQYD\n\
VQQIDApTb21lIFN0YXRlMQ0wCwYDVQQHDARUb3duMRIwEAYDVQQKDAlPcmcsIElu\n\
Yy4xDTALBgNVBAsMBFVuaXQxFTATBgNVBAMMDGhvc3QuZXhhbXBsZTEaMBgGCSqG\n\
SIb3DQEJARYLYUBiLmV4YW1wbGUwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR/\n\
6NB0leOUE+NrSoCyvg8yPIxwxs0UOlQtslcn1VJcemBWo7NP0MseSN2sbGfTIS6l\n\
Jc07VutvePl1zqOI16ugo2wwajAdBgNVHQ4EFgQUECP5KIAw3TLCfqCStFqLLCQ/\n\
y90wHwYDVR0jBBgwFoAUECP5KIAw3TLCfqCStFqLLCQ/y90wDwYDVR0TAQH/BAUw\n\
AwEB/zAXBgNVHREEEDAOggxob3N0LmV4YW1wbGUwCgYIKoZIzj0EAwIDRwAwRAIg\n\
MQbe8d+8MX3ZuZTCfxkGlgxnKUHjOOtJEOM49bno0xgCIDJrzq0d6dCAPz1DxKCL\n\
7ROyMfqnGdNEodXYNB4As6tK\n\
-----END CERTIFICATE-----\n\
";
    /// No extensions; O is a TeletexString (Latin-1 "Café"), CN a BMPString.
    const CERT_T61_BMP: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBXzCCAQUCFFWiAmJd66Qyvekrkgvlk0hLEKwJMAoGCCqGSM49BAMCMDExCzAJ\n\
BgNVBAYTAlhYMQ0wCwYDVQQKFARDYWbpMRMwEQYDVQQDHgoDqQBtAGUAZwBhMCAX\n\
DTI2MTEyNjIzMDYyN1oYDzIxMjYxMTAyMjMwNjI3WjAxMQswCQYDVQQGEwJYWDEN\n\
MAsGA1UEChQEQ2Fm6TETMBEGA1UEAx4KA6kAbQBlAGcAYTBZMBMGByqGSM49AgEG\n\
CCqGSM49AwEHA0IABMHPflrPKRm8DGA6jteMQASDA7rB0gRqe7oHPFR5uxkAq00I\n\
ES0V1wrk090rAGjoOwmog490uSm9YYprA49tmjAwCgYIKoZIzj0EAwIDSAAwRQIh\n\
AODRg+6M2oZ4cIKKGbLn+PxjszbL7ey8IjOQwMJTI6LoAiABxCTOSbwPUd+aFWdc\n\
dO/2yz3wNpwoq49u+IQr3UsESQ==\n\
-----END CERTIFICATE-----\n\
";
    /// Extensions (key ids, basic constraints) but no subjectAltName.
    const CERT_NO_SAN: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBojCCAUmgAwIBAgIUal+i9tZag9vuQ60NuNJT4rL5rX4wCgYIKoZIzj0EAwIw\n\
JjESMBAGA1UECgwJY29vcCB0ZXN0MRAwDgYDVQQDDAdvbmx5LWNuMCAXDTI2MTEy\n\
NjIzMDYzMloYDzIxMjYxMTAyMjMwNjMyWjAmMRIwEAYDVQQKDAljb29wIHRlc3Qx\n\
EDAOBgNVBAMMB29ubHktY24wWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASuCm9n\n\
0O2/ky0xHuerW43KqE5dGa6bRdFpt4plY081Cf+e0f61HPBQubsgL8ZG6QVlx7Ag\n\
+p21PfIGUPE7rMumo1MwUTAdBgNVHQ4EFgQUudETSgG80E7jhGGE/zBfJt3cZwww\n\
HwYDVR0jBBgwFoAUudETSgG80E7jhGGE/zBfJt3cZwwwDwYDVR0TAQH/BAUwAwEB\n\
/zAKBggqhkjOPQQDAgNHADBEAiBoETxwBNfRPwOMKPNsfY/a0qx7JUtOsO60nG6R\n\
yOzbNQIgDueGjehtDR33IK9A2pfW5SExhI76URZz7ORlxUbkg7Y=\n\
-----END CERTIFICATE-----\n\
";

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn certificate_subjects_read_with_openssl_names_and_string_types() {
        assert_eq!(
            cert_subject(&der(CERT_SAN)),
            Some(pairs(&[
                ("C", "XX"),
                ("ST", "Some State"),
                ("L", "Town"),
                ("O", "Org, Inc."),
                ("OU", "Unit"),
                ("CN", "host.example"),
                ("emailAddress", "a@b.example"),
            ]))
        );
        assert_eq!(
            cert_subject(&der(CERT_T61_BMP)),
            Some(pairs(&[("C", "XX"), ("O", "Café"), ("CN", "Ωmega")]))
        );
        let wanted = parse_subject("o=COOP  test, CN=only-cn").unwrap();
        assert!(subjects_match(
            &wanted,
            &cert_subject(&der(CERT_NO_SAN)).unwrap()
        ));
    }

    #[test]
    fn subject_alt_name_presence() {
        assert_eq!(has_subject_alt_name(&der(CERT_SAN)), Some(true));
        assert_eq!(has_subject_alt_name(&der(CERT_T61_BMP)), Some(false));
        assert_eq!(has_subject_alt_name(&der(CERT_NO_SAN)), Some(false));
    }

    #[test]
    fn malformed_certificates_are_refused_without_panic() {
        let good = der(CERT_SAN);
        for n in 0..good.len() {
            assert_eq!(cert_subject(&good[..n]), None, "truncated to {n} bytes");
            assert_eq!(
                has_subject_alt_name(&good[..n]),
                None,
                "truncated to {n} bytes"
            );
        }
        assert_eq!(cert_subject(b"not a certificate"), None);
        assert_eq!(has_subject_alt_name(&[]), None);
    }
}
