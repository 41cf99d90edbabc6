import Foundation
@_exported import AsyncOffersFFI

/// Always-ready BOLT 12 offers for the wallet: the Swift face of the SDK.
///
/// Build it with `defaultConfig(...)` and the 32-byte seed of the wallet's LDK node, `start()`
/// it, iterate `events()`, and `takeOffer(label:)` whenever the app shows an offer. Offers
/// already on disk are available before `start()`. Methods return at once;
/// `waitForReadyOffers` is `async`. Errors are `OffersError`s with a message.
public final class AsyncOffersClient: @unchecked Sendable {
    private let inner: AsyncOffers
    private let broadcaster = EventBroadcaster()

    public init(config: OffersConfig, seed: Data) throws {
        inner = try AsyncOffers(config: config, seed: seed)
        inner.addListener(listener: broadcaster)
    }

    /// Every event from now on, in order. Each call gives its own stream.
    public func events() -> AsyncStream<OfferEvent> { broadcaster.stream() }

    /// Connects to every server and fills the offers in the background.
    public func start() throws { try inner.start() }

    /// Disconnects; offers stay available.
    public func stop() { inner.stop() }

    /// Every offer, with its state.
    public func offers() -> [Offer] { inner.offers() }

    /// The offers ready to hand out.
    public func readyOffers() -> [Offer] { inner.readyOffers() }

    /// A ready offer never handed out before, now marked used under `label`.
    public func takeOffer(label: String? = nil) throws -> Offer { try inner.takeOffer(label: label) }

    /// The offer for `label` (a contact, a profile, a point of sale): the same one every time
    /// for the same label, across restarts, never one handed out before under another label.
    public func offerFor(label: String) throws -> Offer { try inner.offerFor(label: label) }

    /// The handed-out offers as an offer book: bytes for the app's backup.
    public func exportOffers() throws -> Data { try inner.exportOffers() }

    /// Imports an offer book of another install of this wallet (a restored backup, another
    /// device): its offers are refreshed here and their slots never reused; none is handed
    /// out twice.
    public func importOffers(_ book: Data) throws -> ImportedOffers { try inner.importOffers(book: book) }

    /// New channel hints: every offer gets a fresh invoice.
    public func updateChannels(_ hints: [ChannelHint]) throws { try inner.updateChannels(hints: hints) }

    /// The wallet node's id, hex.
    public var nodeId: String { inner.nodeId() }

    /// Registers a listener called on an SDK thread; `events()` is usually simpler.
    public func addListener(_ listener: OfferListener) { inner.addListener(listener: listener) }

    /// Waits until at least `count` offers are ready, or throws after `timeout` seconds.
    public func waitForReadyOffers(count: Int, timeout: TimeInterval) async throws -> [Offer] {
        try await inner.waitForReadyOffers(count: UInt32(count), timeoutMs: UInt64(timeout * 1000))
    }
}

/// Fans the SDK's events out to every open stream.
private final class EventBroadcaster: OfferListener, @unchecked Sendable {
    private let lock = NSLock()
    private var continuations: [UUID: AsyncStream<OfferEvent>.Continuation] = [:]

    func stream() -> AsyncStream<OfferEvent> {
        AsyncStream(bufferingPolicy: .bufferingNewest(256)) { continuation in
            let id = UUID()
            lock.lock()
            continuations[id] = continuation
            lock.unlock()
            continuation.onTermination = { [weak self] _ in
                guard let self else { return }
                self.lock.lock()
                self.continuations[id] = nil
                self.lock.unlock()
            }
        }
    }

    func onOfferReady(offer: Offer) {}

    func onEvent(event: OfferEvent) {
        lock.lock()
        let open = Array(continuations.values)
        lock.unlock()
        for continuation in open { continuation.yield(event) }
    }
}
