import Foundation
@_exported import AsyncOffersFFI

/// Always-ready BOLT 12 offers for the wallet: the Swift face of the SDK.
///
/// `open(config:seed:)` it with `defaultConfig(...)` and the 32-byte seed of the wallet's LDK
/// node, `start()` it, iterate `events()`, and `takeOffer(label:)` whenever the app shows an
/// offer. Offers already on disk are available before `start()`. What may wait says so, and
/// has an `async` form that waits off the caller's thread. Errors are `OffersError`s with a
/// message.
public final class AsyncOffersClient: @unchecked Sendable {
    private let inner: AsyncOffers

    private init(inner: AsyncOffers) {
        self.inner = inner
    }

    /// Builds the client on the calling thread, which it blocks: it may wait for another
    /// client of the data dir to let go (`dataDirLockWait`, and up to 10 s for a stopped
    /// client of this process), then loads every stored offer. Never on the main thread: use
    /// `open(config:seed:)`.
    public convenience init(config: OffersConfig, seed: Data) throws {
        try Self.checkDurations(of: config)
        self.init(inner: try AsyncOffers(config: config, seed: seed))
    }

    /// Builds the client as `init(config:seed:)` does, waiting off the caller's thread.
    /// Cancelling the task ends the wait for the data dir at once with `CancellationError`.
    public static func open(config: OffersConfig, seed: Data) async throws -> AsyncOffersClient {
        try checkDurations(of: config)
        let inner = try await cancellable { try await AsyncOffers.open(config: config, seed: seed, cancellation: $0) }
        return AsyncOffersClient(inner: inner)
    }

    /// Runs `call` with a `CallCancellation` that the task's cancellation cancels, and throws
    /// `CancellationError` when that ended it: UniFFI's Swift glue cannot end a Rust call by
    /// itself, so without this a cancelled task would wait for the call to run its course.
    fileprivate static func cancellable<T>(_ call: (CallCancellation) async throws -> T) async throws -> T {
        let cancellation = CallCancellation()
        do {
            return try await withTaskCancellationHandler {
                try await call(cancellation)
            } onCancel: {
                cancellation.cancel()
            }
        } catch OffersError.Cancelled {
            throw CancellationError()
        }
    }

    /// The longest `TimeInterval` the SDK takes: beyond it (or negative, or NaN) the generated
    /// bindings would trap instead of throwing.
    private static let longestInterval: TimeInterval = 1e18

    private static func checkDurations(of config: OffersConfig) throws {
        let durations: [(String, TimeInterval)] = [
            ("readyOfferMaxAge", config.readyOfferMaxAge),
            ("invoiceRefreshInterval", config.invoiceRefreshInterval),
            ("minOfferPathsLifetime", config.minOfferPathsLifetime),
            ("tickInterval", config.tickInterval),
            ("offerExpiringNotice", config.offerExpiringNotice),
            ("expiredOfferRetention", config.expiredOfferRetention),
            ("dataDirLockWait", config.dataDirLockWait),
        ]
        for (name, value) in durations where !(value >= 0 && value <= longestInterval) {
            throw OffersError.InvalidArgument(message: "\(name) must be from 0 to \(longestInterval) s, not \(value)")
        }
    }

    /// The events not handled yet, oldest first, then each new one. Those that ask the app to
    /// act (an offer expiring or expired, a refresh failing, a payer's request) were kept on
    /// disk while the app was not iterating, across restarts: nothing is missed by iterating
    /// late. An event counts as handled when the loop asks for the next one; a loop left
    /// before gets it again next time. Iterate with one loop at a time, from any task: marking
    /// an event handled (a write, and the data dir's lock if the client is not started) waits
    /// on an SDK thread. If that fails (an app extension holds the data dir; a full disk), it
    /// is tried again, after 0.25 s and then twice as long each time up to 30 s, before the
    /// next event comes: the event is not delivered again and the sequence does not end.
    public func events() -> Events { Events(inner: inner) }

    /// Connects to every server and fills the offers in the background.
    public func start() throws { try inner.start() }

    /// Disconnects; offers stay available.
    public func stop() { inner.stop() }

    /// Every offer, with its state.
    public func offers() -> [Offer] { inner.offers() }

    /// The offers ready to hand out.
    public func readyOffers() -> [Offer] { inner.readyOffers() }

    /// A ready offer never handed out before, now marked used under `label`, on disk before it
    /// returns (an fsync; a client not started also waits for the data dir). Prefer
    /// `takeOfferAsync(label:)` on the main thread.
    public func takeOffer(label: String? = nil) throws -> Offer { try inner.takeOffer(label: label) }

    /// `takeOffer(label:)`, waiting off the caller's thread. Cancelling the task ends a wait
    /// for the data dir with `CancellationError`; an offer already being written is returned.
    public func takeOfferAsync(label: String? = nil) async throws -> Offer {
        try await Self.cancellable { try await inner.takeOfferAsync(label: label, cancellation: $0) }
    }

    /// The offer for `label` (a contact, a profile, a point of sale): the same one every time
    /// for the same label, across restarts, never one handed out before under another label.
    /// A first call for a label writes as `takeOffer(label:)` does.
    public func offerFor(label: String) throws -> Offer { try inner.offerFor(label: label) }

    /// `offerFor(label:)`, waiting off the caller's thread; cancelled as `takeOfferAsync`.
    public func offerForAsync(label: String) async throws -> Offer {
        try await Self.cancellable { try await inner.offerForAsync(label: label, cancellation: $0) }
    }

    /// The handed-out offers as an offer book: bytes for the app's backup.
    public func exportOffers() throws -> Data { try inner.exportOffers() }

    /// Imports an offer book of another install of this wallet (a restored backup, another
    /// device): its offers are refreshed here and their slots never reused; none is handed
    /// out twice. A book of another wallet throws `InvalidOfferBook` and changes nothing; a
    /// failed write throws `Storage`, leaving the offers not yet written unimported: import
    /// again.
    public func importOffers(_ book: Data) throws -> ImportedOffers { try inner.importOffers(book: book) }

    /// The oldest event not handled yet, with its id, if any: it stays first until
    /// `eventHandled(id:)` is given that id (nothing else removes it). For apps that read the
    /// queue themselves instead of iterating `events()`.
    public func nextEvent() -> QueuedOfferEvent? { inner.nextEvent() }

    /// The event `id` was handled: it leaves the queue, and its record the data dir, before
    /// this returns. An id no longer queued is ignored.
    public func eventHandled(id: UInt64) throws { try inner.eventHandled(id: id) }

    /// `eventHandled(id:)`, waiting off the caller's thread; cancelling the task ends a wait
    /// for the data dir with `CancellationError`.
    public func eventHandledAsync(id: UInt64) async throws {
        try await Self.cancellable { try await inner.eventHandledAsync(id: id, cancellation: $0) }
    }

    /// New channel hints: every offer gets a fresh invoice. A hint no payment could use is
    /// refused.
    public func updateChannels(_ hints: [ChannelHint]) throws { try inner.updateChannels(hints: hints) }

    /// Running or not, the ready offers, each server's connection and what last went wrong
    /// with it (offer paths it refused and why, a failed connection): for a diagnostics
    /// screen.
    public func status() -> ClientStatus { inner.status() }

    /// The wallet node's id, hex.
    public var nodeId: String { inner.nodeId() }

    /// The id of the SDK's own connection to the servers, hex: not the wallet node's.
    public var transportNodeId: String { inner.transportNodeId() }

    /// Registers a listener called on an SDK thread for each event as it happens (a live feed);
    /// returns its id for `removeListener(_:)`. The SDK holds the listener, and what it
    /// captures, until then.
    @discardableResult
    public func addListener(_ listener: OfferListener) -> UInt64 { inner.addListener(listener: listener) }

    /// Removes the listener `id` and lets go of it; whether it was registered.
    @discardableResult
    public func removeListener(_ id: UInt64) -> Bool { inner.removeListener(id: id) }

    /// Does in one short background window (a `BGAppRefreshTask`'s 30 seconds) what a started
    /// client does over time, and returns by `timeout` seconds (`.infinity`: no limit) with a
    /// report: connects if the
    /// client is not started, fills the missing ready offers, sends the invoices due for a
    /// refresh, checks the offers due a check (`checkOffers`), waits until the server confirmed
    /// each and it is on disk, then disconnects if it connected. Nothing counts as done before it is on disk. Cancelling the task (a
    /// `BGTask`'s expiration handler) ends it within milliseconds with `CancellationError`,
    /// having let go of the data dir as `stop()` would if it took it; what it wrote stays.
    /// Throws `OffersError.DataDirInUse` if the client is not started and another holds the
    /// data dir.
    public func sync(timeout: TimeInterval) async throws -> SyncReport {
        guard timeout >= 0, !timeout.isNaN else {
            throw OffersError.InvalidArgument(message: "timeout must not be negative, not \(timeout)")
        }
        let timeout = min(timeout, Self.longestInterval)
        return try await Self.cancellable { try await inner.sync(timeout: timeout, cancellation: $0) }
    }

    /// Checks every handed-out offer now as a payer sees it, and returns by `timeout` seconds
    /// with a report: each offer's static invoice is fetched from its server over the offer's
    /// own paths and compared with the invoice the server confirmed last. Verified offers get
    /// `verifiedAt`; an invoice the server lost or rolled back is served again and checked
    /// again; an offer whose slot holds another offer's invoice is broken (`.offerBroken`, and
    /// `offerFor` gives its label a fresh offer). Connects if the client is not started, as
    /// `sync` does; cancelling the task ends it with `CancellationError`. The client also
    /// checks each offer every `offerCheckInterval` on its own.
    public func checkOffers(timeout: TimeInterval) async throws -> CheckReport {
        guard timeout >= 0, !timeout.isNaN else {
            throw OffersError.InvalidArgument(message: "timeout must not be negative, not \(timeout)")
        }
        let timeout = min(timeout, Self.longestInterval)
        return try await Self.cancellable { try await inner.checkOffers(timeout: timeout, cancellation: $0) }
    }

    /// The chain's tip height as the wallet's node last saw it (`node.status().currentBestBlock.height`
    /// in ldk-node): invoices built from now on cap their payments' CLTV expiry from it rather
    /// than from an estimate off the clock, which a wrong clock makes wrong.
    public func setBestBlockHeight(_ height: UInt32) { inner.setBestBlockHeight(height: height) }

    /// Waits until at least `count` offers are ready, or throws after `timeout` seconds
    /// (`OffersError.Timeout`), or when the task is cancelled (`CancellationError`).
    public func waitForReadyOffers(count: Int, timeout: TimeInterval) async throws -> [Offer] {
        guard count >= 0, count <= Int(UInt32.max) else {
            throw OffersError.InvalidArgument(message: "count must be from 0 to \(UInt32.max), not \(count)")
        }
        guard timeout >= 0, !timeout.isNaN else {
            throw OffersError.InvalidArgument(message: "timeout must not be negative, not \(timeout)")
        }
        // An infinite timeout (or any beyond 30 billion years): no limit.
        let timeout = min(timeout, Self.longestInterval)
        return try await Self.cancellable {
            try await inner.waitForReadyOffers(count: UInt32(count), timeout: timeout, cancellation: $0)
        }
    }

    /// The client's events as an `AsyncSequence`; see `events()`.
    public struct Events: AsyncSequence, Sendable {
        public typealias Element = OfferEvent
        fileprivate let inner: AsyncOffers

        public func makeAsyncIterator() -> Iterator { Iterator(inner: inner) }

        /// Hands out the oldest event not handled yet; asked for the next, it marks the one
        /// it handed out before handled, by its id.
        public struct Iterator: AsyncIteratorProtocol {
            fileprivate let inner: AsyncOffers
            /// The id of the event handed out last, not yet marked handled.
            private var delivered: UInt64?

            fileprivate init(inner: AsyncOffers) {
                self.inner = inner
            }

            public mutating func next() async -> OfferEvent? {
                if let id = delivered {
                    var retryAfter: Double = 0.25
                    while true {
                        do {
                            try await AsyncOffersClient.cancellable { try await inner.eventHandledAsync(id: id, cancellation: $0) }
                            break
                        } catch {
                            // Cancelled, it stays delivered: the next loop gets it again.
                            if Task.isCancelled { return nil }
                            try? await Task.sleep(nanoseconds: UInt64(retryAfter * 1e9))
                            retryAfter = Swift.min(retryAfter * 2, 30)
                        }
                    }
                    delivered = nil
                }
                let cancellation = CallCancellation()
                while !Task.isCancelled {
                    let queued = await withTaskCancellationHandler {
                        await inner.waitNextEvent(timeout: 60, cancellation: cancellation)
                    } onCancel: {
                        cancellation.cancel()
                    }
                    if let queued, !Task.isCancelled {
                        delivered = queued.id
                        return queued.event
                    }
                }
                return nil
            }
        }
    }
}
