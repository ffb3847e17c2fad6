//! Certificates for TLS tests: a CA (a federation's) and leaf certificates it signs, written
//! as PEM files.

use anyhow::Result;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate authority that signs leaf certificates.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
    /// Its certificate as a PEM file.
    pub pem: PathBuf,
}

/// A leaf certificate and its key as PEM files.
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/<file>.pem`.
    pub fn new(dir: &Path, file: &str, name: &str) -> Result<TestCa> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, name);
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        let pem = dir.join(format!("{file}.pem"));
        std::fs::write(&pem, cert.pem())?;
        Ok(TestCa { cert, key, pem })
    }

    /// A certificate for `names` (DNS names), good for TLS servers and clients, written to
    /// `dir/<file>-cert.pem` and `dir/<file>-key.pem`.
    pub fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> Result<LeafFiles> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, names.first().copied().unwrap_or(file));
        params.distinguished_name = subject;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let files = LeafFiles {
            cert: dir.join(format!("{file}-cert.pem")),
            key: dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}
