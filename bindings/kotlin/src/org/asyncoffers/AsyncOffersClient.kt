package org.asyncoffers

import kotlin.time.Duration
import kotlin.time.toJavaDuration
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.flow
import org.asyncoffers.ffi.AsyncOffers
import org.asyncoffers.ffi.ChannelHint
import org.asyncoffers.ffi.CheckReport
import org.asyncoffers.ffi.ClientStatus
import org.asyncoffers.ffi.ImportedOffers
import org.asyncoffers.ffi.Offer
import org.asyncoffers.ffi.OfferEvent
import org.asyncoffers.ffi.OfferListener
import org.asyncoffers.ffi.OffersConfig
import org.asyncoffers.ffi.OffersException
import org.asyncoffers.ffi.QueuedOfferEvent
import org.asyncoffers.ffi.SyncReport

/**
 * Always-ready BOLT 12 offers for the wallet: the Kotlin face of the SDK.
 *
 * [open] it with [org.asyncoffers.ffi.defaultConfig] and the 32-byte seed of the wallet's LDK
 * node, [start] it, collect [events], and [takeOffer] whenever the app shows an offer. Offers
 * already on disk are available before [start]. What may wait says so, and has a suspending
 * form that waits off the caller's thread. Errors are
 * [org.asyncoffers.ffi.OffersException]s with a message; out-of-range arguments are
 * [IllegalArgumentException]s.
 */
class AsyncOffersClient private constructor(private val inner: AsyncOffers) : AutoCloseable {
    /**
     * Builds the client on the calling thread, which it blocks: it may wait for another client
     * of the data dir to let go (`dataDirLockWait`, and up to 10 s for a stopped client of
     * this process), then loads every stored offer. Never on the main thread: use [open].
     */
    constructor(config: OffersConfig, seed: ByteArray) : this(AsyncOffers(config, seed))

    companion object {
        /** Builds the client as the constructor does, waiting off the caller's thread. */
        suspend fun open(config: OffersConfig, seed: ByteArray): AsyncOffersClient =
            AsyncOffersClient(AsyncOffers.open(config, seed))
    }

    /**
     * The events not handled yet, oldest first, then each new one. Those that ask the app to
     * act (an offer expiring or expired, a refresh failing, a payer's request) were kept on disk
     * while the app was not collecting, across restarts: nothing is missed by collecting late.
     * An event counts as handled once the collector's block for it returns; cancelled before,
     * it comes again. Collect with one collector at a time; on any dispatcher, the main one
     * too: marking an event handled (a write, and the data dir's lock if the client is not
     * started) happens on an SDK thread. If that fails (another client, an app extension say,
     * holds the data dir; a full disk), it is tried again, after 0.25 s and then twice as long
     * each time up to 30 s, before the next event comes: the Flow neither ends for it nor
     * delivers the event again.
     */
    val events: Flow<OfferEvent> = flow {
        while (true) {
            // A cancelled collector drops the wait at once.
            val queued = inner.waitNextEvent(java.time.Duration.ofSeconds(60)) ?: continue
            emit(queued.event)
            markHandled(queued.id)
        }
    }

    /** Marks [id] handled, trying again with backoff until it is written (see [events]). */
    private suspend fun markHandled(id: ULong) {
        var retryAfterMs = 250L
        while (true) {
            try {
                return inner.eventHandledAsync(id)
            } catch (e: OffersException) {
                delay(retryAfterMs)
                retryAfterMs = (retryAfterMs * 2).coerceAtMost(30_000L)
            }
        }
    }

    /**
     * The oldest event not handled yet, with its id, if any: it stays first until
     * [eventHandled] is given that id (nothing else removes it). For apps that read the queue
     * themselves instead of collecting [events].
     */
    fun nextEvent(): QueuedOfferEvent? = inner.nextEvent()

    /**
     * The event [id] was handled: it leaves the queue, and its record the data dir, before this
     * returns. An id no longer queued is ignored.
     */
    fun eventHandled(id: ULong) = inner.eventHandled(id)

    /** [eventHandled], waiting off the caller's thread. */
    suspend fun eventHandledAsync(id: ULong) = inner.eventHandledAsync(id)

    /** Connects to every server and fills the offers in the background. */
    fun start() = inner.start()

    /** Disconnects; offers stay available. */
    fun stop() = inner.stop()

    /** Every offer, with its state. */
    fun offers(): List<Offer> = inner.offers()

    /** The offers ready to hand out. */
    fun readyOffers(): List<Offer> = inner.readyOffers()

    /**
     * A ready offer never handed out before, now marked used under [label], on disk before it
     * returns (an fsync; a client not started also waits for the data dir). Prefer
     * [takeOfferAsync] on the main thread.
     */
    fun takeOffer(label: String? = null): Offer = inner.takeOffer(label)

    /** [takeOffer], waiting off the caller's thread. */
    suspend fun takeOfferAsync(label: String? = null): Offer = inner.takeOfferAsync(label)

    /**
     * The offer for [label] (a contact, a profile, a point of sale): the same one every time
     * for the same label, across restarts, never one handed out before under another label.
     * A first call for a label writes as [takeOffer] does.
     */
    fun offerFor(label: String): Offer = inner.offerFor(label)

    /** [offerFor], waiting off the caller's thread. */
    suspend fun offerForAsync(label: String): Offer = inner.offerForAsync(label)

    /** The handed-out offers as an offer book: bytes for the app's backup. */
    fun exportOffers(): ByteArray = inner.exportOffers()

    /**
     * Imports an offer book of another install of this wallet (a restored backup, another
     * device): its offers are refreshed here and their slots never reused; none is handed out
     * twice. A book of another wallet throws `InvalidOfferBook` and changes nothing; a failed
     * write throws `Storage`, leaving the offers not yet written unimported: import again.
     */
    fun importOffers(book: ByteArray): ImportedOffers = inner.importOffers(book)

    /** New channel hints: every offer gets a fresh invoice. A hint no payment could use is refused. */
    fun updateChannels(hints: List<ChannelHint>) = inner.updateChannels(hints)

    /**
     * Running or not, the ready offers, each server's connection and what last went wrong with
     * it (offer paths it refused and why, a failed connection): for a diagnostics screen.
     */
    fun status(): ClientStatus = inner.status()

    /** The wallet node's id, hex. */
    val nodeId: String get() = inner.nodeId()

    /** The id of the SDK's own connection to the servers, hex: not the wallet node's. */
    val transportNodeId: String get() = inner.transportNodeId()

    /**
     * Registers a listener called on an SDK thread for each event as it happens (a live feed);
     * returns its id for [removeListener]. The SDK holds the listener, and what it captures,
     * until then.
     */
    fun addListener(listener: OfferListener): ULong = inner.addListener(listener)

    /** Removes the listener [id] and lets go of it; whether it was registered. */
    fun removeListener(id: ULong): Boolean = inner.removeListener(id)

    /**
     * Does in one short background window (a `CoroutineWorker`'s `doWork`) what a started
     * client does over time, and returns by [timeout] (`Duration.INFINITE`: no limit) with a
     * report: connects if the client is
     * not started, fills the missing ready offers, sends the invoices due for a refresh, checks
     * the offers due a check ([checkOffers]), waits until the server confirmed each and it is
     * on disk, then disconnects if it connected.
     * Nothing counts as done before it is on disk. Cancelling the coroutine ends it within
     * milliseconds (the coroutine's `CancellationException`), letting go of the data dir as
     * [stop] does if it took it. Throws `OffersException.DataDirInUse` if the client is not
     * started and another holds the data dir.
     */
    suspend fun sync(timeout: Duration): SyncReport {
        require(!timeout.isNegative()) { "timeout must not be negative, not $timeout" }
        return inner.sync(timeout.toJavaDuration())
    }

    /**
     * Checks every handed-out offer now as a payer sees it, and returns by [timeout] with a
     * report: each offer's static invoice is fetched from its server over the offer's own
     * paths and compared with the invoice the server confirmed last. Verified offers get
     * `verifiedAt`; an invoice the server lost or rolled back is served again and checked
     * again; an offer whose slot holds another offer's invoice is broken (`OfferBroken`, and
     * [offerFor] gives its label a fresh offer). Connects if the client is not started, as
     * [sync] does. The client also checks each offer every `offerCheckInterval` on its own.
     */
    suspend fun checkOffers(timeout: Duration): CheckReport {
        require(!timeout.isNegative()) { "timeout must not be negative, not $timeout" }
        return inner.checkOffers(timeout.toJavaDuration())
    }

    /**
     * The chain's tip height as the wallet's node last saw it (`node.status().currentBestBlock.height`
     * in ldk-node): invoices built from now on cap their payments' CLTV expiry from it rather
     * than from an estimate off the clock, which a wrong clock makes wrong.
     */
    fun setBestBlockHeight(height: Int) {
        require(height >= 0) { "height must not be negative, not $height" }
        inner.setBestBlockHeight(height.toUInt())
    }

    /** Suspends until at least [count] offers are ready, or throws after [timeout]. */
    suspend fun waitForReadyOffers(count: Int, timeout: Duration): List<Offer> {
        require(count >= 0) { "count must not be negative, not $count" }
        require(!timeout.isNegative()) { "timeout must not be negative, not $timeout" }
        // An infinite timeout becomes the longest java.time.Duration: no limit.
        return inner.waitForReadyOffers(count.toUInt(), timeout.toJavaDuration())
    }

    override fun close() = inner.close()
}
