//! The adapter LDK's onion messenger calls: [`ProtocolHandler`] turns each callback into one
//! call of the engine, and holds nothing of the engine's own.

use std::sync::Arc;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::{AsyncPaymentsContext, OffersContext};
use lightning::onion_message::async_payments::{
    AsyncPaymentsMessage, AsyncPaymentsMessageHandler, HeldHtlcAvailable, OfferPaths,
    OfferPathsRequest, ReleaseHeldHtlc, ServeStaticInvoice, StaticInvoicePersisted,
};
use lightning::onion_message::messenger::{
    MessageSendInstructions, Responder, ResponseInstruction,
};
use lightning::onion_message::offers::{OffersMessage, OffersMessageHandler};

use crate::flow::{Engine, Message, MessageKind};

/// The client's protocol handler for one of its servers: the `AsyncPaymentsMessageHandler` and
/// `OffersMessageHandler` of the onion messenger connected to that server. The client's own
/// TCP transport runs one per server; use it to run the client over an `OnionMessenger` of your
/// own instead (tests with in-memory LDK nodes, custom transports).
///
/// Give it to the messenger as both the offers and the async-payments handler, sign with
/// [`WalletKeys::transport_keys_manager`](crate::keys::WalletKeys::transport_keys_manager),
/// route with [`ServerRouter`](crate::ServerRouter), and report the connection to the server and
/// the maintenance ticks. Do not also call [`AsyncOffersClient::start`](crate::AsyncOffersClient::start).
#[derive(Clone)]
pub struct ProtocolHandler {
    engine: Arc<Engine>,
    server: PublicKey,
    /// Whether the messenger takes our messages from this handler; the client's own transport
    /// takes them from the engine instead and builds their onions itself.
    messenger_sends: bool,
}

impl ProtocolHandler {
    /// A handler whose messenger sends the messages we start.
    pub(crate) fn new(engine: Arc<Engine>, server: PublicKey) -> Self {
        Self {
            engine,
            server,
            messenger_sends: true,
        }
    }

    /// A handler for the client's own transport, which sends the messages we start itself.
    pub(crate) fn receiving_only(engine: Arc<Engine>, server: PublicKey) -> Self {
        Self {
            engine,
            server,
            messenger_sends: false,
        }
    }

    /// The messenger is connected to the server: its missing slots are requested, and its
    /// unconfirmed invoices sent again, at once (a messenger of the app's keeps its own
    /// reconnection policy; the client's transport backs off from a server that drops it).
    pub fn server_connected(&self) {
        self.engine.resume();
        self.engine.on_connected(self.server, true)
    }

    /// The messenger lost the server.
    pub fn server_disconnected(&self) {
        self.engine.on_disconnected(self.server)
    }

    /// What of `kind` may leave now, for the messenger (nothing if our transport sends).
    fn release<M>(
        &self,
        kind: MessageKind,
        of_kind: fn(Message) -> Option<M>,
    ) -> Vec<(M, MessageSendInstructions)> {
        if !self.messenger_sends {
            return Vec::new();
        }
        self.engine
            .release_for_messenger(&self.server, kind)
            .into_iter()
            .filter_map(|outgoing| {
                let instructions = outgoing.instructions();
                of_kind(outgoing.message).map(|message| (message, instructions))
            })
            .collect()
    }

    /// Maintenance of every server's offers: expiry, resends, refreshes, retries. Call it every
    /// [`Config::tick_interval`](crate::Config::tick_interval), once for the client.
    pub fn tick(&self) {
        self.engine.resume();
        self.engine.on_tick()
    }
}

impl AsyncPaymentsMessageHandler for ProtocolHandler {
    fn handle_offer_paths_request(
        &self,
        _message: OfferPathsRequest,
        _context: AsyncPaymentsContext,
        _responder: Option<Responder>,
    ) -> Option<(OfferPaths, ResponseInstruction)> {
        log::debug!("ignoring OfferPathsRequest: this client is not a static invoice server");
        None
    }

    fn handle_offer_paths(
        &self,
        message: OfferPaths,
        context: AsyncPaymentsContext,
        responder: Option<Responder>,
    ) -> Option<(ServeStaticInvoice, ResponseInstruction)> {
        self.engine
            .on_offer_paths(self.server, message, context, responder);
        None
    }

    fn handle_serve_static_invoice(
        &self,
        _message: ServeStaticInvoice,
        _context: AsyncPaymentsContext,
        _responder: Option<Responder>,
    ) {
        log::debug!("ignoring ServeStaticInvoice: this client is not a static invoice server");
    }

    fn handle_static_invoice_persisted(
        &self,
        _message: StaticInvoicePersisted,
        context: AsyncPaymentsContext,
    ) {
        self.engine.on_invoice_persisted(self.server, context);
    }

    fn handle_held_htlc_available(
        &self,
        _message: HeldHtlcAvailable,
        _context: AsyncPaymentsContext,
        _responder: Option<Responder>,
    ) -> Option<(ReleaseHeldHtlc, ResponseInstruction)> {
        log::debug!("ignoring HeldHtlcAvailable: HTLCs are released by the wallet node");
        None
    }

    fn handle_release_held_htlc(&self, _message: ReleaseHeldHtlc, _context: AsyncPaymentsContext) {}

    fn release_pending_messages(&self) -> Vec<(AsyncPaymentsMessage, MessageSendInstructions)> {
        self.release(MessageKind::AsyncPayments, |message| match message {
            Message::AsyncPayments(message) => Some(message),
            Message::Offers(_) => None,
        })
    }
}

impl OffersMessageHandler for ProtocolHandler {
    fn handle_message(
        &self,
        message: OffersMessage,
        context: Option<OffersContext>,
        _responder: Option<Responder>,
    ) -> Option<(OffersMessage, ResponseInstruction)> {
        self.engine.on_offers_message(self.server, message, context);
        None
    }

    /// The invoice requests of the client's checks of its offers.
    fn release_pending_messages(&self) -> Vec<(OffersMessage, MessageSendInstructions)> {
        self.release(MessageKind::Offers, |message| match message {
            Message::Offers(message) => Some(message),
            Message::AsyncPayments(_) => None,
        })
    }
}
