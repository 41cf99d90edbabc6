//! Client configuration.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use lightning::bitcoin::hex::FromHex;
use lightning::bitcoin::secp256k1::PublicKey;
use lightning::bitcoin::Network;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::ln::channel_state::ChannelDetails;
use lightning::ln::channelmanager::MIN_FINAL_CLTV_EXPIRY_DELTA;
use lightning::routing::router::DEFAULT_MAX_TOTAL_CLTV_EXPIRY_DELTA;
use lightning::util::ser::Readable;

use crate::Error;

/// Where the static invoice server is and how to reach it.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The server's Lightning node id.
    pub node_id: PublicKey,
    /// `host:port` of the server's Lightning (noise) listener.
    pub address: String,
    /// The paths the server gave this wallet out of band, to request offer paths over.
    pub paths: Vec<BlindedMessagePath>,
}

impl ServerConfig {
    /// Builds a server config from the text forms LSPs hand out: node id hex, `host:port`, and
    /// the hex of LDK's encoding of `Vec<BlindedMessagePath>` (what ldk-node's
    /// `blinded_paths_for_async_recipient` returns).
    pub fn from_hex(node_id_hex: &str, address: &str, paths_hex: &str) -> Result<Self, Error> {
        let node_id_bytes = Vec::<u8>::from_hex(node_id_hex.trim())
            .map_err(|e| Error::InvalidConfig(format!("server node id is not hex: {e}")))?;
        let node_id = PublicKey::from_slice(&node_id_bytes).map_err(|e| {
            Error::InvalidConfig(format!("server node id is not a public key: {e}"))
        })?;
        let paths = decode_server_paths(paths_hex)?;
        Ok(Self {
            node_id,
            address: address.trim().to_string(),
            paths,
        })
    }
}

/// Decodes the hex of LDK's `Vec<BlindedMessagePath>` encoding.
pub fn decode_server_paths(paths_hex: &str) -> Result<Vec<BlindedMessagePath>, Error> {
    let bytes = Vec::<u8>::from_hex(paths_hex.trim())
        .map_err(|e| Error::InvalidServerPaths(format!("not hex: {e}")))?;
    let mut reader = &bytes[..];
    let paths: Vec<BlindedMessagePath> = Readable::read(&mut reader)
        .map_err(|e| Error::InvalidServerPaths(format!("not an encoded path list: {e:?}")))?;
    if !reader.is_empty() {
        return Err(Error::InvalidServerPaths(format!(
            "{} trailing bytes",
            reader.len()
        )));
    }
    if paths.is_empty() {
        return Err(Error::InvalidServerPaths("the list is empty".into()));
    }
    Ok(paths)
}

/// A channel of the wallet node with its LSP, as payers should route over it. Static invoices
/// carry one blinded payment path per hint, through the LSP to the wallet node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct ChannelHint {
    /// The LSP's node id (the channel counterparty, introduction node of the payment path).
    pub lsp_node_id: PublicKey,
    /// The channel's short channel id (or an alias the LSP recognizes).
    pub short_channel_id: u64,
    /// The LSP's base fee for forwarding over this channel.
    pub fee_base_msat: u32,
    /// The LSP's proportional fee, in millionths.
    pub fee_proportional_millionths: u32,
    /// The LSP's CLTV expiry delta for this channel.
    pub cltv_expiry_delta: u16,
    /// Smallest HTLC the channel accepts towards the wallet.
    pub htlc_minimum_msat: u64,
    /// Largest HTLC the channel accepts towards the wallet.
    pub htlc_maximum_msat: u64,
}

impl ChannelHint {
    /// The hint for one of the wallet node's own channels, as its `ChannelManager` lists them:
    /// `None` until the channel is ready and the LSP's forwarding fees are known.
    pub fn from_channel_details(channel: &ChannelDetails) -> Option<Self> {
        let fees = channel.counterparty.forwarding_info.as_ref()?;
        if !channel.is_channel_ready {
            return None;
        }
        Some(Self {
            lsp_node_id: channel.counterparty.node_id,
            short_channel_id: channel.get_inbound_payment_scid()?,
            fee_base_msat: fees.fee_base_msat,
            fee_proportional_millionths: fees.fee_proportional_millionths,
            cltv_expiry_delta: fees.cltv_expiry_delta,
            htlc_minimum_msat: channel.inbound_htlc_minimum_msat.unwrap_or(1),
            htlc_maximum_msat: channel
                .inbound_htlc_maximum_msat
                .unwrap_or(channel.inbound_capacity_msat),
        })
    }
}

impl ChannelHint {
    /// Refuses a hint no payment could use: LDK would fail to build its payment path, or
    /// payers' routers would refuse the path. The error names the channel.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let channel = self.short_channel_id;
        let why = if self.htlc_maximum_msat <= u64::from(self.fee_base_msat) {
            format!(
                "its htlc_maximum_msat ({}) does not exceed its fee_base_msat ({}): nothing is left to forward",
                self.htlc_maximum_msat, self.fee_base_msat
            )
        } else if self.htlc_minimum_msat > self.htlc_maximum_msat {
            format!(
                "its htlc_minimum_msat ({}) is above its htlc_maximum_msat ({})",
                self.htlc_minimum_msat, self.htlc_maximum_msat
            )
        } else if u32::from(self.cltv_expiry_delta) + u32::from(MIN_FINAL_CLTV_EXPIRY_DELTA)
            > DEFAULT_MAX_TOTAL_CLTV_EXPIRY_DELTA
        {
            format!(
                "its cltv_expiry_delta ({}) with the wallet's final {} blocks exceeds the {} blocks payers' routers accept",
                self.cltv_expiry_delta, MIN_FINAL_CLTV_EXPIRY_DELTA, DEFAULT_MAX_TOTAL_CLTV_EXPIRY_DELTA
            )
        } else {
            return Ok(());
        };
        Err(Error::InvalidConfig(format!(
            "channel hint {channel}: {why}"
        )))
    }
}

/// The most Ready offers a config may ask for: more is not a cache but a store, and each one
/// is a slot held and an invoice refreshed on the server.
pub const MAX_READY_OFFER_TARGET: u16 = 1_000;
/// The shortest maintenance tick: below it, maintenance would keep a core busy for nothing
/// (waits are in seconds; apps should tick every few seconds or more).
pub const MIN_TICK_INTERVAL: Duration = Duration::from_millis(10);

// The defaults of [`Config::new`], shared with the FFI's `default_config`.
pub(crate) const DEFAULT_READY_OFFER_TARGET: u16 = 10;
pub(crate) const DEFAULT_READY_OFFER_MAX_AGE: Duration = Duration::from_secs(2 * 3600);
/// A week: an invoice's payment paths stay valid for its offer's whole life (their CLTV cap
/// spans it), new channels and fees are sent at once by `update_channels`, and a server that
/// lost the invoice is found by the checks; what is left is a safety refresh. Each refresh is
/// a 32 KiB onion, where LDK's 2 h (made for always-online nodes) cost a phone twelve a day.
pub(crate) const DEFAULT_INVOICE_REFRESH_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
pub(crate) const DEFAULT_OFFER_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub(crate) const DEFAULT_MIN_OFFER_PATHS_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
pub(crate) const DEFAULT_TICK_INTERVAL: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_MAX_MESSAGES_PER_MINUTE: u32 = 120;
pub(crate) const DEFAULT_OFFER_EXPIRING_NOTICE: Duration = Duration::from_secs(14 * 24 * 3600);
pub(crate) const DEFAULT_EXPIRED_OFFER_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Which node the `forward_invoice_request_path` of each offer leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
pub enum InvoiceRequestTarget {
    /// The wallet's own LDK node (same seed): when it is online it answers payers with a
    /// regular BOLT 12 invoice. The SDK never sees these requests.
    #[default]
    WalletNode,
    /// This client's transport identity: the SDK verifies forwarded requests with the offer's
    /// nonce and reports them as [`crate::Event::InvoiceRequestForwarded`]. For apps without a
    /// node of their own online.
    Client,
}

/// Everything the client needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The chain the offers are for.
    pub network: Network,
    /// Where offers are persisted (by the default filesystem store), and where the lock that
    /// keeps one client at a time on them lives, whatever the store. The client creates it if
    /// needed and keeps it private to the app's user (mode 0700 on Unix, records 0600).
    pub data_dir: PathBuf,
    /// The static invoice servers: one, or several so that offers keep coming when one is
    /// down. Each keeps its own slots; an offer stays with the server that holds its invoice.
    /// The first gets the larger share when the offers do not divide evenly, and the
    /// single-server records of earlier versions are read as its.
    pub servers: Vec<ServerConfig>,
    /// How many Ready offers to keep at hand, from 1 to [`MAX_READY_OFFER_TARGET`].
    pub ready_offer_target: u16,
    /// A Ready (never shown) offer older than this is replaced by a fresh one; a Pending one
    /// whose invoice the server has not confirmed within it is abandoned, and its slot
    /// requested again.
    pub ready_offer_max_age: Duration,
    /// A handed-out offer's invoice is rebuilt and re-sent when older than this (a week by
    /// default: new channels are sent at once by
    /// [`AsyncOffersClient::update_channels`](crate::AsyncOffersClient::update_channels), and
    /// an invoice the server lost is found by the checks).
    pub invoice_refresh_interval: Duration,
    /// How often each handed-out offer is checked as a payer sees it: its static invoice
    /// fetched from its server over the offer's own paths and compared with the invoice the
    /// server confirmed last (see [`AsyncOffersClient::check_offers`](crate::AsyncOffersClient::check_offers)).
    /// Zero: only when the app asks.
    pub offer_check_interval: Duration,
    /// Offer paths must stay valid at least this long (paths without expiry are accepted);
    /// longer than [`Self::offer_expiring_notice`].
    pub min_offer_paths_lifetime: Duration,
    /// The wallet node's channels, for payment paths. Empty: a direct path to the wallet node.
    pub channel_hints: Vec<ChannelHint>,
    /// How often maintenance runs (refreshes, retries, expiry): seconds or more in an app, at
    /// least [`MIN_TICK_INTERVAL`].
    pub tick_interval: Duration,
    /// The chain tip height if the app knows it; otherwise a safe upper bound is estimated from
    /// the clock. Only used to cap payment CLTV expiries, so over-estimates are harmless.
    /// Updated later with
    /// [`AsyncOffersClient::set_best_block_height`](crate::AsyncOffersClient::set_best_block_height).
    pub best_block_height: Option<u32>,
    /// Where forwarded invoice requests go.
    pub invoice_request_target: InvoiceRequestTarget,
    /// The most messages the client sends each server in a minute, in a burst or spread out.
    /// Filling every slot takes two per slot; refreshing every offer after
    /// [`AsyncOffersClient::update_channels`](crate::AsyncOffersClient::update_channels) one
    /// per offer. What does not fit waits, and leaves as the budget refills.
    pub max_messages_per_minute: u32,
    /// How long before a handed-out offer expires
    /// [`AsyncOffersClient::offer_for`](crate::AsyncOffersClient::offer_for) starts giving its
    /// label a fresh offer, and [`crate::Event::OfferExpiring`] tells the app to swap it (once a
    /// fresh offer is Ready). Offers without expiry never expire.
    pub offer_expiring_notice: Duration,
    /// The server slots (`invoice_slot` numbers) new offers are drawn from, at random. All of
    /// them (the default) unless a server accepts fewer: LDK's server role and ldk-node's
    /// store take any `u16`. The wider the range, the less likely another install on the
    /// same seed lands on a slot of this one's live offers (see the README).
    pub invoice_slots: RangeInclusive<u16>,
    /// How long a handed-out offer is kept, record and slot, after it expires by the device's
    /// wall clock. Expired, it is no longer refreshed or given out; if the clock was wrong and
    /// is put right within this time, the offer is live again, as it was all along for payers.
    /// Only after it is the record deleted and the slot free for a new offer.
    pub expired_offer_retention: Duration,
}

impl Config {
    /// A config with the defaults: 10 slots, Ready offers replaced after 2 h, invoices
    /// refreshed weekly, each handed-out offer checked daily, 90-day minimum path lifetime,
    /// 60 s maintenance tick, no channel hints, at most 120 messages a minute to each
    /// server, notice of expiry 14 days ahead, every server slot, expired offers kept 90 days.
    /// Push more servers onto [`Config::servers`].
    pub fn new(network: Network, data_dir: impl Into<PathBuf>, server: ServerConfig) -> Self {
        Self {
            network,
            data_dir: data_dir.into(),
            servers: vec![server],
            ready_offer_target: DEFAULT_READY_OFFER_TARGET,
            ready_offer_max_age: DEFAULT_READY_OFFER_MAX_AGE,
            invoice_refresh_interval: DEFAULT_INVOICE_REFRESH_INTERVAL,
            offer_check_interval: DEFAULT_OFFER_CHECK_INTERVAL,
            min_offer_paths_lifetime: DEFAULT_MIN_OFFER_PATHS_LIFETIME,
            channel_hints: Vec::new(),
            tick_interval: DEFAULT_TICK_INTERVAL,
            best_block_height: None,
            invoice_request_target: InvoiceRequestTarget::default(),
            max_messages_per_minute: DEFAULT_MAX_MESSAGES_PER_MINUTE,
            offer_expiring_notice: DEFAULT_OFFER_EXPIRING_NOTICE,
            invoice_slots: 0..=u16::MAX,
            expired_offer_retention: DEFAULT_EXPIRED_OFFER_RETENTION,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.ready_offer_target == 0 || self.ready_offer_target > MAX_READY_OFFER_TARGET {
            return Err(Error::InvalidConfig(format!(
                "ready_offer_target must be from 1 to {MAX_READY_OFFER_TARGET}, not {}",
                self.ready_offer_target
            )));
        }
        let slots = self
            .invoice_slots
            .end()
            .checked_sub(*self.invoice_slots.start())
            .map(|span| u32::from(span) + 1);
        if slots.is_none_or(|slots| slots < u32::from(self.ready_offer_target)) {
            return Err(Error::InvalidConfig(format!(
                "invoice_slots {}..={} holds fewer slots than ready_offer_target ({})",
                self.invoice_slots.start(),
                self.invoice_slots.end(),
                self.ready_offer_target
            )));
        }
        if self.tick_interval < MIN_TICK_INTERVAL {
            return Err(Error::InvalidConfig(format!(
                "tick_interval must be at least {} ms, not {:?}",
                MIN_TICK_INTERVAL.as_millis(),
                self.tick_interval
            )));
        }
        for (name, value) in [
            ("ready_offer_max_age", self.ready_offer_max_age),
            ("invoice_refresh_interval", self.invoice_refresh_interval),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidConfig(format!("{name} must be positive")));
            }
        }
        // Otherwise every offer would count as expiring from the start, and `offer_for` would
        // hand out a new one at every call.
        if self.min_offer_paths_lifetime <= self.offer_expiring_notice {
            return Err(Error::InvalidConfig(format!(
                "min_offer_paths_lifetime ({:?}) must be longer than offer_expiring_notice ({:?})",
                self.min_offer_paths_lifetime, self.offer_expiring_notice
            )));
        }
        if self.max_messages_per_minute == 0 {
            return Err(Error::InvalidConfig(
                "max_messages_per_minute must be at least 1".into(),
            ));
        }
        if self.servers.is_empty() {
            return Err(Error::InvalidConfig("no static invoice server".into()));
        }
        for hint in &self.channel_hints {
            hint.check()?;
        }
        for (index, server) in self.servers.iter().enumerate() {
            if server.paths.is_empty() {
                return Err(Error::InvalidServerPaths(format!(
                    "no paths to server {}",
                    server.node_id
                )));
            }
            if server.address.is_empty() {
                return Err(Error::InvalidConfig(format!(
                    "the address of server {} is empty",
                    server.node_id
                )));
            }
            if self.servers[..index]
                .iter()
                .any(|other| other.node_id == server.node_id)
            {
                return Err(Error::InvalidConfig(format!(
                    "server {} is listed twice",
                    server.node_id
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::server_key;

    fn config() -> Config {
        let keys = lightning::sign::KeysManager::new(&[3; 32], 1, 1, true);
        let secp = lightning::bitcoin::secp256k1::Secp256k1::new();
        let path = BlindedMessagePath::one_hop(
            server_key(),
            lightning::sign::ReceiveAuthKey([1; 32]),
            lightning::blinded_path::message::MessageContext::Custom(vec![]),
            &keys,
            &secp,
        );
        Config::new(
            Network::Regtest,
            "/nonexistent",
            ServerConfig {
                node_id: server_key(),
                address: "127.0.0.1:9735".into(),
                paths: vec![path],
            },
        )
    }

    #[test]
    fn configs_a_client_could_not_run_well_on_are_refused_by_name() {
        assert_eq!(config().validate(), Ok(()));
        type Change = fn(&mut Config);
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.ready_offer_target = 0, "ready_offer_target"),
            (
                |c| c.ready_offer_target = 65_535,
                "ready_offer_target must be from 1 to 1000",
            ),
            (
                |c| c.tick_interval = Duration::from_millis(1),
                "tick_interval",
            ),
            (
                |c| c.invoice_refresh_interval = Duration::ZERO,
                "invoice_refresh_interval",
            ),
            (
                |c| c.ready_offer_max_age = Duration::ZERO,
                "ready_offer_max_age",
            ),
            (
                |c| c.min_offer_paths_lifetime = c.offer_expiring_notice,
                "longer than offer_expiring_notice",
            ),
        ];
        for (change, named) in cases {
            let mut bad = config();
            change(&mut bad);
            match bad.validate() {
                Err(Error::InvalidConfig(why)) => assert!(why.contains(named), "{why}"),
                other => panic!("{named}: {other:?}"),
            }
        }
    }
}
