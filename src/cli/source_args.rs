//! The source flags shared by `serve` and `status --live`: which source, where, with which
//! certificates. They override the configuration file; switching `--source` keeps the file's
//! section for that source when it has one.

use std::path::PathBuf;

use anyhow::Context;
use dictmon::config::{Config, SourceConfig};
use dictmon::domain::PspCategory;
use dictmon::source::Source;
use dictmon::source::bridge::{BridgeConfig, BridgeSource};
use dictmon::source::dict::{DictConfig, DictSource};
use dictmon::source::simulator::{Scenario, Simulator, SimulatorSource};

#[derive(clap::Args, Debug, Default)]
pub struct SourceArgs {
    /// Where policy states come from: the built-in simulator, a Bridge over gRPC, or DICT's
    /// own HTTPS API.
    #[arg(long, value_parser = ["simulator", "bridge", "dict"])]
    source: Option<String>,
    /// The Bridge's gRPC address, http://… or https://… (with --source bridge).
    #[arg(long, value_name = "URL")]
    bridge_url: Option<String>,
    /// DICT's API base, e.g. `https://dict.pi.rsfn.net.br:16422/api/v2/` (with --source dict).
    #[arg(long, value_name = "URL")]
    dict_url: Option<String>,
    /// The participant's ISPB, sent to DICT as PI-RequestingParticipant (8 characters).
    #[arg(long, value_name = "ISPB")]
    ispb: Option<String>,
    /// CA bundle that signs the Bridge's or DICT's server certificate (PEM).
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Client certificate for mutual TLS (PEM).
    #[arg(long, value_name = "PEM")]
    client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "PEM")]
    client_key: Option<PathBuf>,
    /// DICT's response-signing certificate(s), PEM (with --source dict): every answer's
    /// XML signature is verified against it, and an answer that fails is not used.
    #[arg(long, value_name = "PEM")]
    dict_signing_cert: Option<PathBuf>,
    /// Simulator scenario (steady, burst, exhaustion, capacity-change, flapping, malformed).
    #[arg(long)]
    scenario: Option<Scenario>,
}

impl SourceArgs {
    /// Applies the flags over `c.source`.
    pub fn apply(&self, c: &mut Config) -> anyhow::Result<()> {
        self.apply_source(c)?;
        // A flag for another source than the one in use is a mistake, not a no-op.
        let misplaced = match &c.source {
            SourceConfig::Simulator { .. } => [
                ("--bridge-url", self.bridge_url.is_some()),
                ("--dict-url", self.dict_url.is_some()),
                ("--ispb", self.ispb.is_some()),
                ("--ca-cert", self.ca_cert.is_some()),
                ("--dict-signing-cert", self.dict_signing_cert.is_some()),
            ]
            .into_iter()
            .find(|(_, given)| *given),
            SourceConfig::Bridge(_) => [
                ("--dict-url", self.dict_url.is_some()),
                ("--dict-signing-cert", self.dict_signing_cert.is_some()),
            ]
            .into_iter()
            .find(|(_, given)| *given),
            SourceConfig::Dict(_) => [("--bridge-url", self.bridge_url.is_some())]
                .into_iter()
                .find(|(_, given)| *given),
        };
        if let Some((flag, _)) = misplaced {
            anyhow::bail!(
                "{flag} does not apply to {}: choose the source with --source (or [source] kind in the config)",
                c.source.describe()
            );
        }
        if self.scenario.is_some() && !matches!(c.source, SourceConfig::Simulator { .. }) {
            anyhow::bail!("--scenario applies to the simulator only");
        }
        Ok(())
    }

    fn apply_source(&self, c: &mut Config) -> anyhow::Result<()> {
        match self.source.as_deref() {
            Some("bridge") if !matches!(c.source, SourceConfig::Bridge(_)) => {
                let url = self.bridge_url.clone().context(
                    "--source bridge needs --bridge-url (or [source.bridge] url in the config)",
                )?;
                c.source = SourceConfig::Bridge(BridgeConfig {
                    url,
                    ca_cert: None,
                    client_cert: None,
                    client_key: None,
                    timeout: c.timeout,
                    ispb: String::new(),
                });
            }
            Some("dict") if !matches!(c.source, SourceConfig::Dict(_)) => {
                let need = |v: &Option<PathBuf>, flag: &str| {
                    v.clone().with_context(|| {
                        format!("--source dict needs {flag} (or [source.dict] in the config)")
                    })
                };
                c.source = SourceConfig::Dict(DictConfig {
                    url: self.dict_url.clone().context(
                        "--source dict needs --dict-url, e.g. https://dict.pi.rsfn.net.br:16422/api/v2/",
                    )?,
                    ispb: self
                        .ispb
                        .clone()
                        .context("--source dict needs --ispb, the participant's 8-character ISPB")?,
                    ca_cert: need(&self.ca_cert, "--ca-cert")?,
                    client_cert: need(&self.client_cert, "--client-cert")?,
                    client_key: need(&self.client_key, "--client-key")?,
                    signing_cert: self.dict_signing_cert.clone(),
                    timeout: c.timeout,
                });
            }
            Some("simulator") if !matches!(c.source, SourceConfig::Simulator { .. }) => {
                c.source = SourceConfig::Simulator {
                    scenario: Scenario::Steady,
                    seed: 1,
                    category: PspCategory::C,
                    policies: dictmon::source::simulator::DICT_POLICIES,
                };
            }
            _ => {}
        }
        let certs = |b_ca: &mut Option<PathBuf>,
                     b_cert: &mut Option<PathBuf>,
                     b_key: &mut Option<PathBuf>| {
            for (flag, slot) in [
                (&self.ca_cert, b_ca),
                (&self.client_cert, b_cert),
                (&self.client_key, b_key),
            ] {
                if flag.is_some() {
                    slot.clone_from(flag);
                }
            }
        };
        match &mut c.source {
            SourceConfig::Bridge(b) => {
                if let Some(u) = &self.bridge_url {
                    b.url.clone_from(u);
                }
                if let Some(i) = &self.ispb {
                    b.ispb.clone_from(i);
                }
                certs(&mut b.ca_cert, &mut b.client_cert, &mut b.client_key);
                b.timeout = c.timeout;
            }
            SourceConfig::Dict(d) => {
                if let Some(u) = &self.dict_url {
                    d.url.clone_from(u);
                }
                if let Some(i) = &self.ispb {
                    d.ispb.clone_from(i);
                }
                if self.dict_signing_cert.is_some() {
                    d.signing_cert.clone_from(&self.dict_signing_cert);
                }
                let (mut ca, mut cert, mut key) = (
                    Some(d.ca_cert.clone()),
                    Some(d.client_cert.clone()),
                    Some(d.client_key.clone()),
                );
                certs(&mut ca, &mut cert, &mut key);
                (d.ca_cert, d.client_cert, d.client_key) = (
                    ca.unwrap_or_default(),
                    cert.unwrap_or_default(),
                    key.unwrap_or_default(),
                );
                d.timeout = c.timeout;
            }
            SourceConfig::Simulator { scenario, .. } => {
                if let Some(s) = self.scenario {
                    *scenario = s;
                }
            }
        }
        Ok(())
    }
}

/// Something to do with whichever source the configuration names (sources are not object
/// safe: each is its own type).
pub trait WithSource {
    /// The result.
    type Output;
    /// Runs with the source.
    async fn run<S: Source + 'static>(self, source: S) -> anyhow::Result<Self::Output>;
}

/// Builds the configured source and hands it to `job`.
pub async fn with_source<J: WithSource>(
    config: &SourceConfig,
    job: J,
) -> anyhow::Result<J::Output> {
    match config {
        SourceConfig::Simulator {
            scenario,
            seed,
            category,
            policies,
        } => {
            job.run(SimulatorSource::new(Simulator::with_policies(
                *seed, *scenario, *category, *policies,
            )))
            .await
        }
        SourceConfig::Bridge(b) => job.run(BridgeSource::new(b)?).await,
        SourceConfig::Dict(d) => job.run(DictSource::new(d)?).await,
    }
}

/// The poll interval checked against what the source allows.
pub fn check_interval(config: &Config) -> anyhow::Result<()> {
    let least = config.source.min_interval();
    anyhow::ensure!(
        config.interval >= least,
        "--interval {:?} is too short for {}: at least {}s (DICT's POLICIES_LIST bucket refills 6 listings a minute, and a shorter poll would drain it)",
        config.interval,
        config.source.describe(),
        least.as_secs().max(1)
    );
    Ok(())
}
