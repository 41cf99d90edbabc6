//! The server role, on LDK's public `OffersMessageFlow` server methods: hand out offer paths,
//! verify and persist static invoices, serve them to payers and forward invoice requests.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1};
use lightning::blinded_path::message::{AsyncPaymentsContext, MessageContext, OffersContext};
use lightning::offers::flow::{
    InvreqResponseInstructions, OffersMessageFlow, MAX_STATIC_INVOICE_SIZE_BYTES,
};
use lightning::onion_message::async_payments::{
    AsyncPaymentsMessage, AsyncPaymentsMessageHandler, HeldHtlcAvailable, OfferPaths,
    OfferPathsRequest, ReleaseHeldHtlc, ServeStaticInvoice, StaticInvoicePersisted,
};
use lightning::onion_message::messenger::{
    MessageRouter, MessageSendInstructions, Responder, ResponseInstruction,
};
use lightning::onion_message::offers::{OffersMessage, OffersMessageHandler};
use lightning::sign::{NodeSigner, ReceiveAuthKey};
use lightning::util::ser::Writeable;

use crate::invoices::InvoiceStore;
use crate::router::ServerRouter;
use crate::{Log, OfferPathsLifetime, Received, ServerIdentity};

/// Faults a test asks the server to show (see `ServerOptions`).
pub(crate) struct Faults {
    pub replay_after: Option<Duration>,
    pub ignore_invoice_requests: bool,
}

/// The LDK flow the server runs on.
pub type Flow = OffersMessageFlow<Arc<ServerRouter>, Arc<Log>>;

/// Handles the async-payments and offers messages a static invoice server receives.
pub struct ServerHandler {
    pub(crate) flow: Arc<Flow>,
    paths_lifetime: OfferPathsLifetime,
    paths: Arc<PathMinter>,
    /// Builds offer paths off the connection's thread (see [`Self::handle_offer_paths_request`]).
    path_builders: WorkerPool,
    /// Offer paths built and waiting for the messenger.
    answers: Arc<Mutex<Vec<(AsyncPaymentsMessage, MessageSendInstructions)>>>,
    flush: Arc<dyn Fn() + Send + Sync>,
    store: Arc<InvoiceStore>,
    writer: mpsc::Sender<PendingWrite>,
    replay: Option<Replay>,
    ignore_invoice_requests: bool,
    received: Arc<Received>,
}

/// Replies sent again on purpose (see `ServerOptions::replay_replies_after`).
#[derive(Clone)]
struct Replay {
    after: Duration,
    queue: Arc<Mutex<Vec<(AsyncPaymentsMessage, MessageSendInstructions)>>>,
    flush: Arc<dyn Fn() + Send + Sync>,
}

impl Replay {
    /// Queues `message` now and again after the delay.
    fn send_twice(&self, message: AsyncPaymentsMessage, instructions: MessageSendInstructions) {
        self.queue
            .lock()
            .unwrap()
            .push((message.clone(), instructions.clone()));
        let (queue, flush, after) = (self.queue.clone(), self.flush.clone(), self.after);
        std::thread::spawn(move || {
            std::thread::sleep(after);
            queue.lock().unwrap().push((message, instructions));
            flush();
        });
    }
}

/// Offer paths with a lifetime of the operator's choosing. LDK's flow hands out one year only;
/// this builds the same paths and reply path with another expiry.
struct PathMinter {
    node_id: PublicKey,
    receive_auth_key: ReceiveAuthKey,
    router: Arc<ServerRouter>,
    secp: Secp256k1<lightning::bitcoin::secp256k1::All>,
}

impl PathMinter {
    /// Paths valid for `lifetime` (`None`: forever) from now.
    fn offer_paths(
        &self,
        request: &OfferPathsRequest,
        context: AsyncPaymentsContext,
        lifetime: Option<Duration>,
    ) -> Option<(OfferPaths, MessageContext)> {
        let AsyncPaymentsContext::OfferPathsRequest {
            recipient_id,
            path_absolute_expiry,
        } = context
        else {
            return None;
        };
        let now = crate::unix_now();
        if now > path_absolute_expiry.unwrap_or(Duration::MAX) {
            return None;
        }
        let expiry = lifetime.map_or(Duration::MAX, |lifetime| now.saturating_add(lifetime));
        let paths_absolute_expiry = lifetime.map(|_| expiry.as_secs());
        let invoice_slot = request.invoice_slot;
        let context = MessageContext::Offers(OffersContext::StaticInvoiceRequested {
            recipient_id: recipient_id.clone(),
            invoice_slot,
            path_absolute_expiry: expiry,
        });
        let paths = self
            .router
            .create_blinded_paths(
                self.node_id,
                self.receive_auth_key,
                context,
                vec![],
                &self.secp,
            )
            .ok()?;
        // The recipient refreshes the invoice over this path for as long as its offer lives.
        let reply_context =
            MessageContext::AsyncPayments(AsyncPaymentsContext::ServeStaticInvoice {
                recipient_id,
                invoice_slot,
                path_absolute_expiry: expiry,
            });
        Some((
            OfferPaths {
                paths,
                paths_absolute_expiry,
            },
            reply_context,
        ))
    }
}

/// A verified invoice waiting for its durable write; confirmed over `responder` once written.
struct PendingWrite {
    recipient_id: Vec<u8>,
    slot: u16,
    message: ServeStaticInvoice,
    responder: Responder,
}

impl ServerHandler {
    /// `flush` is called after each write so the confirmation leaves at once.
    pub(crate) fn new(
        identity: &ServerIdentity,
        store: InvoiceStore,
        paths_lifetime: OfferPathsLifetime,
        faults: Faults,
        received: Arc<Received>,
        flush: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let replay_after = faults.replay_after;
        let flow = identity.flow.clone();
        let paths = Arc::new(PathMinter {
            node_id: identity.node_id,
            receive_auth_key: identity.keys.get_receive_auth_key(),
            router: identity.router.clone(),
            secp: Secp256k1::new(),
        });
        let flush: Arc<dyn Fn() + Send + Sync> = Arc::new(flush);
        let replay = replay_after.map(|after| Replay {
            after,
            queue: Arc::default(),
            flush: flush.clone(),
        });
        let replay_persisted = replay.clone();
        let store = Arc::new(store);
        let (writer, writes) = mpsc::channel::<PendingWrite>();
        // One writer thread: the connection is not held up by fsyncs, and writes to a slot
        // land in the order the invoices arrived.
        let (writer_store, writer_flow, writer_flush) =
            (store.clone(), flow.clone(), flush.clone());
        std::thread::spawn(move || {
            for write in writes {
                match writer_store.save(
                    &write.recipient_id,
                    write.slot,
                    &write.message.invoice,
                    &write.message.forward_invoice_request_path,
                ) {
                    Ok(()) => {
                        log::debug!("stored static invoice for slot {}", write.slot);
                        if let Some(replay) = &replay_persisted {
                            let instructions =
                                write.responder.clone().respond().into_instructions();
                            replay.send_twice(
                                AsyncPaymentsMessage::StaticInvoicePersisted(
                                    StaticInvoicePersisted {},
                                ),
                                instructions,
                            );
                        }
                        writer_flow.static_invoice_persisted(write.responder);
                        writer_flush();
                    }
                    Err(e) => log::error!("could not store static invoice: {e}"),
                }
            }
        });
        Self {
            flow,
            paths_lifetime,
            paths,
            path_builders: WorkerPool::new("offer-paths"),
            answers: Arc::default(),
            flush,
            store,
            writer,
            replay,
            ignore_invoice_requests: faults.ignore_invoice_requests,
            received,
        }
    }
}

impl AsyncPaymentsMessageHandler for ServerHandler {
    /// Answered from a worker: the paths payers see are padded to four hops, which takes
    /// longer than everything else a request needs. Built on the connection's thread, every
    /// later message from that wallet (its next requests, its invoices) would wait for them.
    fn handle_offer_paths_request(
        &self,
        message: OfferPathsRequest,
        context: AsyncPaymentsContext,
        responder: Option<Responder>,
    ) -> Option<(OfferPaths, ResponseInstruction)> {
        let responder = responder?;
        let (flow, paths, lifetime) = (self.flow.clone(), self.paths.clone(), self.paths_lifetime);
        let (answers, replay, flush) = (
            self.answers.clone(),
            self.replay.clone(),
            self.flush.clone(),
        );
        self.path_builders.run(move || {
            let offer_paths = match lifetime {
                OfferPathsLifetime::Ldk => {
                    flow.handle_offer_paths_request(&message, context, vec![])
                }
                OfferPathsLifetime::Fixed(lifetime) => {
                    paths.offer_paths(&message, context, Some(lifetime))
                }
                OfferPathsLifetime::Unlimited => paths.offer_paths(&message, context, None),
            };
            let Some((paths, reply_context)) = offer_paths else {
                log::warn!(
                    "rejected OfferPathsRequest for slot {} (expired or unknown path)",
                    message.invoice_slot
                );
                return;
            };
            let answer = AsyncPaymentsMessage::OfferPaths(paths);
            let instructions = responder
                .respond_with_reply_path(reply_context)
                .into_instructions();
            if let Some(replay) = &replay {
                replay.send_twice(answer.clone(), instructions.clone());
            }
            answers.lock().unwrap().push((answer, instructions));
            flush();
        });
        None
    }

    fn handle_offer_paths(
        &self,
        _: OfferPaths,
        _: AsyncPaymentsContext,
        _: Option<Responder>,
    ) -> Option<(ServeStaticInvoice, ResponseInstruction)> {
        None
    }

    fn handle_serve_static_invoice(
        &self,
        message: ServeStaticInvoice,
        context: AsyncPaymentsContext,
        responder: Option<Responder>,
    ) {
        let Some(responder) = responder else {
            log::warn!("rejected ServeStaticInvoice without a reply path");
            return;
        };
        let (recipient_id, slot) = match self
            .flow
            .verify_serve_static_invoice_message(&message, context)
        {
            Ok(target) => target,
            Err(()) => {
                let size = message.invoice.serialized_length();
                let why = if message.invoice.is_expired() {
                    "the invoice has expired".to_string()
                } else if size > MAX_STATIC_INVOICE_SIZE_BYTES {
                    format!("the invoice is {size} bytes, over {MAX_STATIC_INVOICE_SIZE_BYTES}")
                } else {
                    "it came over an unknown or expired path".to_string()
                };
                log::warn!("rejected ServeStaticInvoice: {why}");
                return;
            }
        };
        self.received.invoices.fetch_add(1, Ordering::Relaxed);
        let write = PendingWrite {
            recipient_id,
            slot,
            message,
            responder,
        };
        if self.writer.send(write).is_err() {
            log::error!("invoice writer stopped; static invoice for slot {slot} not stored");
        }
    }

    fn handle_static_invoice_persisted(&self, _: StaticInvoicePersisted, _: AsyncPaymentsContext) {}

    fn handle_held_htlc_available(
        &self,
        _: HeldHtlcAvailable,
        _: AsyncPaymentsContext,
        _: Option<Responder>,
    ) -> Option<(ReleaseHeldHtlc, ResponseInstruction)> {
        None
    }

    fn handle_release_held_htlc(&self, _: ReleaseHeldHtlc, _: AsyncPaymentsContext) {}

    fn release_pending_messages(&self) -> Vec<(AsyncPaymentsMessage, MessageSendInstructions)> {
        let mut messages = self.flow.release_pending_async_messages();
        messages.append(&mut self.answers.lock().unwrap());
        if let Some(replay) = &self.replay {
            messages.append(&mut replay.queue.lock().unwrap());
        }
        messages
    }
}

impl OffersMessageHandler for ServerHandler {
    fn handle_message(
        &self,
        message: OffersMessage,
        context: Option<OffersContext>,
        responder: Option<Responder>,
    ) -> Option<(OffersMessage, ResponseInstruction)> {
        let OffersMessage::InvoiceRequest(invoice_request) = message else {
            return None;
        };
        self.received
            .invoice_requests
            .fetch_add(1, Ordering::Relaxed);
        if self.ignore_invoice_requests {
            log::debug!("ignoring an invoice request, as told");
            return None;
        }
        let responder = responder?;
        let (recipient_id, slot, invoice_request) =
            match self.flow.verify_invoice_request(invoice_request, context) {
                Ok(InvreqResponseInstructions::SendStaticInvoice {
                    recipient_id,
                    invoice_slot,
                    invoice_request,
                }) => (recipient_id, invoice_slot, invoice_request),
                _ => {
                    log::warn!("rejected an invoice request that is not for a served offer");
                    return None;
                }
            };
        let Some((invoice, forward_path)) = self.store.load(&recipient_id, slot) else {
            log::warn!("no static invoice stored for slot {slot}");
            return None;
        };
        if let Err(e) = self.flow.enqueue_static_invoice(invoice, responder.clone()) {
            log::warn!("not serving the static invoice of slot {slot}: {e:?}");
            return None;
        }
        // Give the recipient a chance to answer with a fresh invoice if it is online.
        self.flow
            .enqueue_invoice_request_to_forward(invoice_request, forward_path, responder);
        None
    }

    fn release_pending_messages(&self) -> Vec<(OffersMessage, MessageSendInstructions)> {
        self.flow.release_pending_offers_messages()
    }
}

/// A few threads running jobs in the order they come: one per core, at least two.
struct WorkerPool {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl WorkerPool {
    fn new(name: &str) -> Self {
        let (jobs, queue) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        for _ in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || loop {
                    // The lock is held only while waiting: jobs run in parallel.
                    let job = match queue.lock().unwrap().recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    job();
                });
            if let Err(e) = spawned {
                log::error!("could not start a {name} worker: {e}");
            }
        }
        Self { jobs }
    }

    fn run(&self, job: impl FnOnce() + Send + 'static) {
        if self.jobs.send(Box::new(job)).is_err() {
            log::error!("no worker left to run a job");
        }
    }
}
