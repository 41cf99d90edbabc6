package org.asyncoffers

import kotlin.time.Duration
import kotlinx.coroutines.channels.BufferOverflow
import kotlinx.coroutines.flow.MutableSharedFlow
import kotlinx.coroutines.flow.SharedFlow
import kotlinx.coroutines.flow.asSharedFlow
import org.asyncoffers.ffi.AsyncOffers
import org.asyncoffers.ffi.ChannelHint
import org.asyncoffers.ffi.ImportedOffers
import org.asyncoffers.ffi.Offer
import org.asyncoffers.ffi.OfferEvent
import org.asyncoffers.ffi.OfferListener
import org.asyncoffers.ffi.OffersConfig

/**
 * Always-ready BOLT 12 offers for the wallet: the Kotlin face of the SDK.
 *
 * Build it with [org.asyncoffers.ffi.defaultConfig] and the 32-byte seed of the wallet's LDK
 * node, [start] it, collect [events], and [takeOffer] whenever the app shows an offer. Offers
 * already on disk are available before [start]. Methods return at once; [waitForReadyOffers]
 * suspends. Errors are [org.asyncoffers.ffi.OffersException]s with a message.
 */
class AsyncOffersClient(config: OffersConfig, seed: ByteArray) : AutoCloseable {
    private val inner = AsyncOffers(config, seed)
    private val eventFlow =
        MutableSharedFlow<OfferEvent>(
            extraBufferCapacity = 256,
            onBufferOverflow = BufferOverflow.DROP_OLDEST,
        )

    /** Every event from now on, in order, as the SDK's own thread reports them. */
    val events: SharedFlow<OfferEvent> = eventFlow.asSharedFlow()

    init {
        inner.addListener(
            object : OfferListener {
                override fun onOfferReady(offer: Offer) {}

                override fun onEvent(event: OfferEvent) {
                    eventFlow.tryEmit(event)
                }
            },
        )
    }

    /** Connects to every server and fills the offers in the background. */
    fun start() = inner.start()

    /** Disconnects; offers stay available. */
    fun stop() = inner.stop()

    /** Every offer, with its state. */
    fun offers(): List<Offer> = inner.offers()

    /** The offers ready to hand out. */
    fun readyOffers(): List<Offer> = inner.readyOffers()

    /** A ready offer never handed out before, now marked used under [label]. */
    fun takeOffer(label: String? = null): Offer = inner.takeOffer(label)

    /**
     * The offer for [label] (a contact, a profile, a point of sale): the same one every time
     * for the same label, across restarts, never one handed out before under another label.
     */
    fun offerFor(label: String): Offer = inner.offerFor(label)

    /** The handed-out offers as an offer book: bytes for the app's backup. */
    fun exportOffers(): ByteArray = inner.exportOffers()

    /**
     * Imports an offer book of another install of this wallet (a restored backup, another
     * device): its offers are refreshed here and their slots never reused; none is handed out
     * twice.
     */
    fun importOffers(book: ByteArray): ImportedOffers = inner.importOffers(book)

    /** New channel hints: every offer gets a fresh invoice. */
    fun updateChannels(hints: List<ChannelHint>) = inner.updateChannels(hints)

    /** The wallet node's id, hex. */
    val nodeId: String get() = inner.nodeId()

    /** Registers a listener called on an SDK thread; [events] is usually simpler. */
    fun addListener(listener: OfferListener) = inner.addListener(listener)

    /** Suspends until at least [count] offers are ready, or throws after [timeout]. */
    suspend fun waitForReadyOffers(count: Int, timeout: Duration): List<Offer> =
        inner.waitForReadyOffers(count.toUInt(), timeout.inWholeMilliseconds.toULong())

    override fun close() = inner.close()
}
