//! The one signing algorithm of session tokens, HS256, as jsonwebtoken's crypto provider.
//!
//! jsonwebtoken's bundled RustCrypto provider brings every algorithm it supports, RSA included
//! (the `rsa` crate has an open advisory, RUSTSEC-2023-0071); banter signs and verifies HS256
//! only. This provider answers HS256 with RustCrypto's `hmac` and `sha2` and refuses every
//! other algorithm, and [`install`] makes it the process's provider.

use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// HS256 with one secret, for signing and for verifying.
struct Hs256(HmacSha256);

impl Hs256 {
    fn new(algorithm: &Algorithm, secret: Option<&[u8]>) -> Result<Self> {
        if *algorithm != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        let secret = secret.ok_or(ErrorKind::InvalidKeyFormat)?;
        HmacSha256::new_from_slice(secret)
            .map(Hs256)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        // Constant-time comparison.
        mac.verify_slice(tag).map_err(signature::Error::from_source)
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

/// The secret of an HMAC signing key.
fn signing_secret(key: &EncodingKey) -> Option<&[u8]> {
    (key.family() == AlgorithmFamily::Hmac).then(|| key.as_bytes())
}

/// The secret of an HMAC verifying key.
fn verifying_secret(key: &DecodingKey) -> Option<&[u8]> {
    match (key.family(), key.kind()) {
        (AlgorithmFamily::Hmac, DecodingKeyKind::SecretOrDer(secret)) => Some(secret),
        _ => None,
    }
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |algorithm, key| Ok(Box::new(Hs256::new(algorithm, signing_secret(key))?)),
    verifier_factory: |algorithm, key| Ok(Box::new(Hs256::new(algorithm, verifying_secret(key))?)),
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes HS256 the process's provider (once; later calls change nothing).
pub fn install() {
    let _ = PROVIDER.install_default();
}
