package org.asyncoffers

import java.io.File
import java.nio.file.Files
import java.util.Collections
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.takeWhile
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.launch
import kotlinx.coroutines.async
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.asyncoffers.ffi.ChannelHint
import org.asyncoffers.ffi.InvoiceRequestTarget
import org.asyncoffers.ffi.InvoiceServer
import org.asyncoffers.ffi.LogLevel
import org.asyncoffers.ffi.LogRecord
import org.asyncoffers.ffi.LogWriter
import org.asyncoffers.ffi.Network
import org.asyncoffers.ffi.Offer
import org.asyncoffers.ffi.OfferEvent
import org.asyncoffers.ffi.OfferListener
import org.asyncoffers.ffi.OfferState
import org.asyncoffers.ffi.OffersConfig
import org.asyncoffers.ffi.OffersException
import org.asyncoffers.ffi.WalletSeed
import org.asyncoffers.ffi.defaultConfig
import org.asyncoffers.ffi.setLogWriter
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.Test

/** Every test drives the SDK from Kotlin against the reference server run as its own process. */
class AsyncOffersTest {
    private lateinit var server: Process
    private lateinit var nodeId: String
    private lateinit var address: String
    private lateinit var paths: String
    private lateinit var serverData: File
    private val seed = ByteArray(32) { 0x21 }
    private val dirs = mutableListOf<File>()

    @Before
    fun startServer() {
        val (process, described) = launchServer()
        server = process
        nodeId = described.nodeId
        address = described.address
        paths = described.pathsHex
    }

    /** Starts a reference server process; returns it and what it hands this wallet. */
    private fun launchServer(): Pair<Process, InvoiceServer> {
        val binary = System.getProperty("async_offers.server") ?: error("-Dasync_offers.server not set")
        val data = tempDir()
        serverData = data
        val process = ProcessBuilder(binary, "--listen", "127.0.0.1:0", "--data-dir", data.path, "--recipient", "kotlin")
            .redirectError(ProcessBuilder.Redirect.DISCARD)
            .start()
        val line = process.inputStream.bufferedReader().readLine() ?: error("the server printed nothing")
        fun field(name: String) = Regex("\"$name\":\"([^\"]*)\"").find(line)?.groupValues?.get(1) ?: error("no $name in $line")
        return process to InvoiceServer(field("node_id"), field("address"), field("paths"))
    }

    @After
    fun stopServer() {
        server.destroy()
        server.waitFor()
        dirs.forEach { it.deleteRecursively() }
    }

    private fun tempDir(prefix: String = "async-offers-kotlin"): File =
        Files.createTempDirectory(prefix).toFile().also { dirs += it }

    /** Fetches each offer's static invoice from the server as a payer, with the server binary. */
    private fun fetchAsPayer(offers: List<Offer>): List<String> {
        val binary = System.getProperty("async_offers.server")!!
        val command = listOf(binary, "fetch", "--server", "$nodeId@$address") + offers.flatMap { listOf("--offer", it.offer) }
        val process = ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).start()
        val lines = process.inputStream.bufferedReader().readLines()
        assertEquals("the payer got and checked every invoice", 0, process.waitFor())
        return lines
    }

    /** The offer records in the data dir now, by name. */
    private fun recordsOnDisk(dataDir: File): Int =
        File(dataDir, "async_offers/offers").list()?.count { !it.contains(".tmp") } ?: 0

    private fun config(dataDir: File, slots: Int = 3): OffersConfig =
        defaultConfig(Network.REGTEST, dataDir.path, nodeId, address, paths).apply {
            readyOfferTarget = slots.toUShort()
            tickInterval = java.time.Duration.ofMillis(200)
        }

    @Test
    fun offersFillAndTheListenerAndTheFlowSeeThemFromAnSdkThread() = runBlocking {
        AsyncOffersClient(config(tempDir()), seed).use { client ->
            val threads = Collections.synchronizedSet(mutableSetOf<String>())
            client.addListener(object : OfferListener {
                override fun onEvent(event: OfferEvent) {
                    if (event is OfferEvent.OfferReady) threads += Thread.currentThread().name
                }
            })
            val ready = async {
                client.events.filterIsInstance<OfferEvent.OfferReady>().take(3).toList()
            }
            client.start()
            val seen = withTimeout(30.seconds) { ready.await() }
            assertEquals(3, seen.map { it.offer.offerId }.toSet().size)
            assertTrue(seen.all { it.offer.offer.startsWith("lno1") && it.offer.state == OfferState.READY })
            assertEquals(3, client.waitForReadyOffers(3, 30.seconds).size)
            assertTrue("called on an SDK thread", threads.isNotEmpty() && Thread.currentThread().name !in threads)
        }
    }

    @Test
    fun takeOfferNeverReturnsTheSameOfferTwice() = runBlocking {
        AsyncOffersClient(config(tempDir()), seed).use { client ->
            client.start()
            client.waitForReadyOffers(3, 30.seconds)
            val taken = (1..3).map { client.takeOffer("order $it") }
            assertEquals(3, taken.map { it.offerId }.toSet().size)
            assertTrue(taken.all { it.state == OfferState.USED })
            assertEquals(listOf("order 1", "order 2", "order 3"), taken.map { it.label })
        }
    }

    @Test
    fun updateChannelsRefreshesEveryReadyAndHandedOutOffer() = runBlocking {
        AsyncOffersClient(config(tempDir()), seed).use { client ->
            client.start()
            client.waitForReadyOffers(3, 30.seconds)
            client.takeOffer("shop")
            client.waitForReadyOffers(3, 30.seconds)
            val offers = client.offers().map { it.offerId }.toSet()
            val refreshed = async(start = CoroutineStart.UNDISPATCHED) {
                client.events.filterIsInstance<OfferEvent.InvoiceRefreshed>().take(offers.size).toList()
            }
            client.updateChannels(listOf(ChannelHint(nodeId, 1uL shl 40, 1_000u, 100u, 72u, 1_000uL, 500_000_000uL)))
            val seen = withTimeout(30.seconds) { refreshed.await() }
            assertEquals(offers, seen.map { it.offerId }.toSet())
        }
    }

    @Test
    fun offerForKeepsOneOfferPerLabel() = runBlocking {
        AsyncOffersClient(config(tempDir()), seed).use { client ->
            client.start()
            client.waitForReadyOffers(3, 30.seconds)
            val alice = client.offerFor("alice")
            assertEquals(alice.offerId, client.offerFor("alice").offerId)
            val bob = client.offerFor("bob")
            val taken = client.takeOffer(null)
            assertEquals(3, setOf(alice.offerId, bob.offerId, taken.offerId).size)
            assertEquals(alice.offerId, client.offerFor("alice").offerId)
        }
    }

    @Test
    fun aSecondClientOnTheSameDataDirListsTheOffersBeforeConnecting() = runBlocking {
        val dir = tempDir()
        val first = AsyncOffersClient(config(dir), seed).use { client ->
            client.start()
            client.waitForReadyOffers(3, 30.seconds).map { it.offerId }.toSet()
        }
        server.destroy()
        server.waitFor()
        AsyncOffersClient(config(dir), seed).use { again ->
            assertEquals(first, again.readyOffers().map { it.offerId }.toSet())
        }
    }

    @Test
    fun badServerPathsNodeIdOrSeedRaiseClearExceptions() {
        val dir = tempDir()
        try {
            AsyncOffersClient(config(dir).apply { servers = listOf(servers[0].copy(pathsHex = "zz")) }, seed)
            fail("bad paths accepted")
        } catch (e: OffersException.InvalidServerPaths) {
            assertTrue(e.message!!, e.message!!.contains("hex"))
        }
        try {
            AsyncOffersClient(config(dir).apply { servers = listOf(servers[0].copy(nodeId = "02abcd")) }, seed)
            fail("bad node id accepted")
        } catch (e: OffersException.InvalidConfig) {
            assertTrue(e.message!!, e.message!!.contains("node id"))
        }
        try {
            AsyncOffersClient(config(dir), ByteArray(31))
            fail("short seed accepted")
        } catch (e: OffersException.InvalidConfig) {
            assertTrue(e.message!!, e.message!!.contains("31 bytes"))
        }
    }

    @Test
    fun offersComeFromTheServerThatAnswersWhenAnotherIsDown() = runBlocking {
        // The second server handed out its paths, then went away: nothing listens there now.
        val (gone, goneServer) = launchServer()
        gone.destroy()
        gone.waitFor()
        val dir = tempDir()
        AsyncOffersClient(config(dir).apply { servers = listOf(goneServer) + servers }, seed).use { client ->
            client.start()
            val ready = client.waitForReadyOffers(3, 30.seconds)
            assertEquals(listOf(nodeId, nodeId, nodeId), ready.map { it.serverNodeId })
            assertEquals(nodeId, client.takeOffer("while one is down").serverNodeId)
            val (down, up) = client.status().servers
            assertTrue(down.lastProblem ?: "no problem", down.lastProblem?.contains("cannot connect") == true)
            assertTrue(!down.connected && up.connected && up.lastProblem == null)
            assertTrue(client.status().running)
        }
    }

    @Test
    fun theLogWriterReceivesTheSdksRecords() = runBlocking {
        val records = Collections.synchronizedList(mutableListOf<LogRecord>())
        setLogWriter(object : LogWriter {
            override fun log(record: LogRecord) {
                records += record
            }
        }, LogLevel.DEBUG)
        AsyncOffersClient(config(tempDir(), slots = 1), seed).use { client ->
            client.start()
            client.waitForReadyOffers(1, 30.seconds)
        }
        val connected = { records.toList().any { it.level == LogLevel.INFO && it.message.contains("connected to the server") } }
        // Records reach the writer on the SDK's log thread.
        repeat(50) { if (!connected()) delay(100) }
        assertTrue("a connection record among ${records.size}", connected())
    }

    @Test
    fun aLogWriterMayCallTheClient() = runBlocking {
        var client: AsyncOffersClient? = null
        val calls = java.util.concurrent.atomic.AtomicInteger()
        setLogWriter(object : LogWriter {
            override fun log(record: LogRecord) {
                client?.offers()
                calls.incrementAndGet()
            }
        }, LogLevel.DEBUG)
        AsyncOffersClient(config(tempDir()), seed).use {
            client = it
            it.start()
            assertEquals(3, it.waitForReadyOffers(3, 30.seconds).size)
        }
        client = null
        assertTrue("the writer was called", calls.get() > 0)
    }

    @Test
    fun openWaitsOffTheCallersThreadAndHandsOutAsync() = runBlocking {
        val dir = tempDir()
        AsyncOffersClient.open(config(dir), seed).use { client ->
            client.start()
            client.waitForReadyOffers(3, 30.seconds)
            val shop = client.offerForAsync("shop")
            assertEquals(shop.offerId, client.offerFor("shop").offerId)
            assertEquals("order", client.takeOfferAsync("order").label)
            try {
                AsyncOffersClient.open(config(dir), seed).close()
                fail("opened a data dir in use")
            } catch (e: OffersException.DataDirInUse) {
                assertTrue(e.message!!, e.message!!.contains("in use"))
            }
        }
    }

    @Test
    fun eventsCollectedAfterStartIncludeWhatCameBefore() = runBlocking {
        AsyncOffersClient(config(tempDir()), seed).use { client ->
            client.start()
            client.waitForReadyOffers(3, 30.seconds)
            // Collected only now, as the README's example does: nothing was missed.
            val ready = withTimeout(30.seconds) {
                client.events.filterIsInstance<OfferEvent.OfferReady>().take(3).toList()
            }
            assertEquals(3, ready.map { it.offer.offerId }.toSet().size)
        }
    }

    @Test
    fun outOfRangeArgumentsAndConfigsRaiseClearErrors() = runBlocking {
        AsyncOffersClient(config(tempDir()), seed).use { client ->
            for ((count, timeout) in listOf(-1 to 1.seconds, 1 to (-1).seconds)) {
                try {
                    client.waitForReadyOffers(count, timeout)
                    fail("waited for $count offers within $timeout")
                } catch (e: IllegalArgumentException) {
                    assertTrue(e.message!!, e.message!!.contains("negative"))
                }
            }
        }
        val bad: List<Pair<OffersConfig.() -> Unit, String>> = listOf(
            Pair({ tickInterval = java.time.Duration.ofMillis(1) }, "tick_interval"),
            Pair({ readyOfferTarget = 65_535u }, "ready_offer_target"),
            Pair({ minOfferPathsLifetime = offerExpiringNotice }, "offer_expiring_notice"),
        )
        for ((change, named) in bad) {
            try {
                AsyncOffersClient(config(tempDir()).apply(change), seed).close()
                fail("accepted a config with a bad $named")
            } catch (e: OffersException.InvalidConfig) {
                assertTrue(e.message!!, e.message!!.contains(named))
            }
        }
        // A negative duration cannot cross to Rust: refused before it does.
        try {
            AsyncOffersClient(config(tempDir()).apply { tickInterval = java.time.Duration.ofSeconds(-1) }, seed).close()
            fail("accepted a negative tick interval")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.contains("non-negative"))
        }
    }

    @Test
    fun aListenerThatThrowsIsLoggedAndTheSdkKeepsFilling() = runBlocking {
        val records = Collections.synchronizedList(mutableListOf<LogRecord>())
        setLogWriter(object : LogWriter {
            override fun log(record: LogRecord) {
                records += record
            }
        }, LogLevel.WARN)
        val warned = { records.toList().any { it.level == LogLevel.WARN && it.message.contains("app bug") } }
        AsyncOffersClient(config(tempDir()), seed).use { client ->
            client.addListener(object : OfferListener {
                override fun onEvent(event: OfferEvent) = throw IllegalStateException("app bug")
            })
            client.start()
            val ready = client.waitForReadyOffers(3, 30.seconds)
            assertEquals(3, ready.map { it.offerId }.toSet().size)
            // The warning is written on the SDK's event thread, which may still be delivering.
            repeat(50) { if (!warned()) delay(100) }
        }
        assertTrue("the listener's exception in the log", warned())
    }

    @Test
    fun anOfferBookRestoredInANewDataDirKeepsTheHandedOutOffers() = runBlocking {
        val (published, book) = AsyncOffersClient(config(tempDir()), seed).use { client ->
            client.start()
            client.waitForReadyOffers(3, 30.seconds)
            client.offerFor("bio") to client.exportOffers()
        }
        AsyncOffersClient(config(tempDir()), seed).use { restored ->
            try {
                restored.importOffers(byteArrayOf(1, 2, 3))
                fail("imported bytes that are no offer book")
            } catch (e: OffersException.InvalidOfferBook) {
                assertTrue(e.message!!, e.message!!.contains("offer book"))
            }
            assertEquals(1u, restored.importOffers(book).imported)
            assertEquals(published.offerId, restored.offerFor("bio").offerId)
            assertEquals(0u, restored.importOffers(book).imported)
        }
    }

    @Test
    fun aBookOfAnotherWalletIsRefusedAndChangesNothing() = runBlocking {
        val theirBook = AsyncOffersClient(config(tempDir(), slots = 1), ByteArray(32) { 0x42 }).use { theirs ->
            theirs.start()
            theirs.waitForReadyOffers(1, 30.seconds)
            theirs.offerFor("theirs")
            theirs.exportOffers()
        }
        AsyncOffersClient(config(tempDir()), seed).use { ours ->
            ours.start()
            ours.waitForReadyOffers(3, 30.seconds)
            // Ids, states and labels: a refresh may change a confirmation time meanwhile.
            val kept = { ours.offers().map { Triple(it.offerId, it.state, it.label) }.sortedBy { it.first } }
            val before = kept()
            try {
                ours.importOffers(theirBook)
                fail("imported another wallet's book")
            } catch (e: OffersException.InvalidOfferBook) {
                assertTrue(e.message!!, e.message!!.contains("not made by this wallet"))
            }
            assertEquals(before, kept())
        }
    }

    @Test
    fun theEventFlowWaitsOutADataDirHeldElsewhereWithoutRepeatingOrEnding() = runBlocking {
        val dir = tempDir()
        // Each try at marking an event handled waits 2 s for the data dir: on an SDK thread.
        val patient = config(dir).apply {
            dataDirLockWait = java.time.Duration.ofSeconds(2)
            invoiceRequestTarget = InvoiceRequestTarget.CLIENT
        }
        AsyncOffersClient(patient, seed).use { client ->
            // A payer's request, kept in the data dir until handled, among events kept in
            // memory only.
            val forwarded = kotlinx.coroutines.CompletableDeferred<Unit>()
            client.addListener(object : OfferListener {
                override fun onEvent(event: OfferEvent) {
                    if (event is OfferEvent.InvoiceRequestForwarded) forwarded.complete(Unit)
                }
            })
            client.start()
            client.waitForReadyOffers(3, 30.seconds)
            fetchAsPayer(listOf(client.offerFor("shop")))
            withTimeout(30.seconds) { forwarded.await() }
            client.stop()
            // Another client (an app extension) holds the data dir: the request's handling
            // cannot be written until it lets go; the events before it need no write.
            AsyncOffersClient(config(dir), seed).use { holder ->
                holder.start()
                val seen = Collections.synchronizedList(mutableListOf<Pair<OfferEvent, Long>>())
                // Collected on this test's one thread, as an app collects on its main thread,
                // until the event after the request.
                val collector = launch {
                    var past = false
                    client.events.takeWhile { event ->
                        seen += event to System.nanoTime()
                        val more = !past
                        past = past || event is OfferEvent.InvoiceRequestForwarded
                        more
                    }.collect {}
                }
                // The collector's thread stays free meanwhile: this ticks on it.
                var longestGapMs = 0L
                val ticker = launch {
                    var last = System.nanoTime()
                    while (true) {
                        delay(50)
                        val now = System.nanoTime()
                        longestGapMs = maxOf(longestGapMs, (now - last) / 1_000_000)
                        last = now
                    }
                }
                delay(3_000)
                ticker.cancel()
                assertTrue("the request came, and nothing after it: $seen", seen.last().first is OfferEvent.InvoiceRequestForwarded)
                assertTrue("the collector's thread was blocked $longestGapMs ms", longestGapMs < 1_000)
                val letGoAt = System.nanoTime()
                holder.stop()
                withTimeout(30.seconds) { collector.join() }
                assertEquals("delivered once", 1, seen.count { it.first is OfferEvent.InvoiceRequestForwarded })
                assertTrue("the next came once the request's handling was written", seen.last().second > letGoAt)
                assertTrue(seen.last().first !is OfferEvent.InvoiceRequestForwarded)
            }
        }
    }

    @Test
    fun aRemovedListenerHearsNothingMore() = runBlocking {
        AsyncOffersClient(config(tempDir()), seed).use { client ->
            class Counter : OfferListener {
                val ready = java.util.concurrent.atomic.AtomicInteger()
                override fun onEvent(event: OfferEvent) {
                    if (event is OfferEvent.OfferReady) ready.incrementAndGet()
                }
            }
            val (kept, removed) = Counter() to Counter()
            client.addListener(kept)
            val id = client.addListener(removed)
            client.start()
            client.waitForReadyOffers(3, 30.seconds)
            withTimeout(10.seconds) { while (removed.ready.get() < 3) delay(10) }
            assertTrue(client.removeListener(id))
            assertTrue("removed once", !client.removeListener(id))
            client.takeOffer("after the removal")
            client.waitForReadyOffers(3, 30.seconds)
            withTimeout(10.seconds) { while (kept.ready.get() < 4) delay(10) }
            assertEquals("the removed one heard nothing more", 3, removed.ready.get())
        }
    }

    @Test
    fun eventsCarryIdsAndHandlingOneRemovesThatOneOnly() = runBlocking {
        AsyncOffersClient(config(tempDir()), seed).use { client ->
            client.start()
            client.waitForReadyOffers(3, 30.seconds)
            val first = client.nextEvent() ?: error("no event after a fill")
            assertEquals("the front stays until handled", first, client.nextEvent())
            client.eventHandled(first.id + 1_000_000uL)
            assertEquals("an unknown id removes nothing", first, client.nextEvent())
            client.eventHandled(first.id)
            val second = client.nextEvent() ?: error("no second event")
            assertNotEquals(first.id, second.id)
            client.eventHandled(first.id)
            assertEquals("handled twice, removed once", second, client.nextEvent())
        }
    }

    @Test
    fun aSecondClientOnADataDirInUseIsRefused() = runBlocking {
        val dir = tempDir()
        AsyncOffersClient(config(dir), seed).use { running ->
            running.start()
            running.waitForReadyOffers(3, 30.seconds)
            try {
                AsyncOffersClient(config(dir), seed).close()
                fail("a second client on a data dir in use")
            } catch (e: OffersException.DataDirInUse) {
                assertTrue(e.message!!, e.message!!.contains("in use"))
            }
        }
        AsyncOffersClient(config(dir), seed).use { after -> assertEquals(3, after.readyOffers().size) }
    }

    @Test
    fun anLdkNodeWalletsMnemonicAndSeedBytesGiveItsNode() {
        val words = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
        // BIP39's vector: the 64 seed bytes of these words with the passphrase "TREZOR".
        val bytes = "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
            .chunked(2).map { it.toInt(16).toByte() }.toByteArray()
        fun nodeOf(seed: WalletSeed): String =
            AsyncOffersClient(config(tempDir()), seed.keysManagerSeed()).use {
                // The SDK's own connection has an id of its own, never the node's.
                assertTrue(it.transportNodeId.length == 66 && it.transportNodeId != it.nodeId)
                it.nodeId
            }
        val fromWords = nodeOf(WalletSeed.fromLdkNodeMnemonic(words, "TREZOR"))
        assertEquals(fromWords, nodeOf(WalletSeed.fromLdkNodeSeedBytes(bytes)))
        // ldk-node's seed file holds those 64 bytes; the 32 they make go back in as they are.
        val seedFile = File(tempDir(), "keys_seed").apply { writeBytes(bytes) }
        val fromFile = WalletSeed.fromLdkNodeSeedFile(seedFile.path)
        assertEquals(fromWords, nodeOf(fromFile))
        assertEquals(fromWords, nodeOf(WalletSeed.fromKeysManagerSeed(fromFile.keysManagerSeed())))
        assertNotEquals(fromWords, nodeOf(WalletSeed.fromLdkNodeMnemonic(words, null)))
        try {
            WalletSeed.fromLdkNodeSeedBytes(ByteArray(32))
            fail("took 32 bytes for ldk-node's 64")
        } catch (e: OffersException.InvalidArgument) {
            assertTrue(e.message!!, e.message!!.contains("64 bytes"))
        }
    }

    @Test
    fun syncWithoutATimeLimitRunsUntilItsWorkIsDone() = runBlocking {
        AsyncOffersClient(config(tempDir()), seed).use { client ->
            val report = withTimeout(30.seconds) { client.sync(kotlin.time.Duration.INFINITE) }
            assertTrue(report.toString(), report.complete)
            assertEquals(3u, report.readyOffers)
        }
    }

    @Test
    fun syncFillsAClientNeverStartedOnDiskAndLeavesItStopped() = runBlocking {
        // Each fsync there takes 300 ms longer (test.sh preloads bindings/testing/slow_fsync.c).
        val dir = tempDir("slow-disk")
        AsyncOffersClient(config(dir), seed).use { client ->
            client.setBestBlockHeight(200)
            val report = client.sync(25.seconds)
            // The moment it returns: everything it reports is in the data dir.
            assertEquals(3, recordsOnDisk(dir))
            assertTrue(report.toString(), report.complete && report.unfinished.isEmpty())
            assertEquals(3u, report.readyOffers)
            assertTrue(report.elapsed < java.time.Duration.ofSeconds(25))
            assertTrue("stopped again", !client.status().running)
            assertEquals(3, fetchAsPayer(client.readyOffers()).size)
        }
        try {
            AsyncOffersClient(config(tempDir()), seed).use { it.setBestBlockHeight(-1) }
            fail("took a negative height")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.contains("negative"))
        }
    }

    @Test
    fun syncRefreshesAHandedOutOffersDueInvoice() = runBlocking {
        val dir = tempDir()
        val shortRefresh = config(dir, slots = 1).apply { invoiceRefreshInterval = java.time.Duration.ofSeconds(2) }
        AsyncOffersClient(shortRefresh, seed).use { client ->
            assertTrue(client.sync(25.seconds).complete)
            val bio = client.offerFor("bio")
            assertTrue(client.sync(25.seconds).complete)
            delay(2_100)
            val report = client.sync(25.seconds)
            assertTrue(report.toString(), report.complete)
            assertEquals(1u, report.refreshed)
            val now = client.offers().first { it.offerId == bio.offerId }
            assertTrue(now.invoiceConfirmedAt!! > bio.invoiceConfirmedAt!!)
        }
    }

    /** Whether the data dir's lock file is free, as another process finds it (`flock`). */
    private fun dataDirLockIsFree(dataDir: File): Boolean =
        ProcessBuilder("flock", "--nonblock", File(dataDir, "async-offers.lock").path, "true")
            .start().waitFor() == 0

    /** Sends the server's process `signal` (STOP: the kernel still accepts, nobody answers). */
    private fun signalServer(signal: String) {
        ProcessBuilder("kill", "-$signal", server.pid().toString()).start().waitFor()
    }

    /** Starts [call], cancels it after [afterMs], and returns how long after the cancel it ended. */
    private suspend fun secondsToEndWhenCancelled(afterMs: Long, call: suspend () -> Unit): Double = coroutineScope {
        val work = launch(Dispatchers.Default) { call() }
        delay(afterMs)
        val cancelledAt = System.nanoTime()
        work.cancelAndJoin()
        (System.nanoTime() - cancelledAt) / 1e9
    }

    @Test
    fun cancellingASyncWithAServerThatNeverAnswersEndsItAndLetsGoOfTheDataDir() = runBlocking {
        val dir = tempDir()
        signalServer("STOP")
        try {
            AsyncOffersClient(config(dir), seed).use { client ->
                val took = secondsToEndWhenCancelled(500) { client.sync(30.seconds) }
                assertTrue("the sync ended ${took}s after its coroutine was cancelled", took < 0.5)
                assertTrue(!client.status().running)
                assertTrue("the data dir is let go of", dataDirLockIsFree(dir))
            }
        } finally {
            signalServer("CONT")
        }
    }

    @Test
    fun cancellingCallsWaitingForTheDataDirEndsThem() = runBlocking {
        val dir = tempDir()
        val patient = config(dir).apply { dataDirLockWait = java.time.Duration.ofSeconds(30) }
        // Made while the data dir is free, then left stopped: its hand-outs take the lock.
        AsyncOffersClient(patient, seed).use { idle ->
            AsyncOffersClient(config(dir), seed).use { holder ->
                holder.start()
                val calls = listOf<Pair<String, suspend () -> Unit>>(
                    "open" to { AsyncOffersClient.open(patient, seed).close() },
                    "takeOfferAsync" to { idle.takeOfferAsync("cancelled") },
                    "offerForAsync" to { idle.offerForAsync("cancelled") },
                    "sync" to { idle.sync(30.seconds) },
                    "waitForReadyOffers" to { idle.waitForReadyOffers(100, kotlin.time.Duration.INFINITE) },
                )
                for ((name, call) in calls) {
                    val took = secondsToEndWhenCancelled(300, call)
                    assertTrue("$name ended ${took}s after its coroutine was cancelled", took < 0.5)
                }
                // The calls cancelled gave up their waits: the holder stops, and a client that
                // will not wait gets the data dir, none of them having taken it meanwhile.
                holder.stop()
                Thread.sleep(200)
                assertTrue("none of them took the data dir", dataDirLockIsFree(dir))
                assertTrue("nothing handed out", idle.offers().all { it.label == null })
            }
        }
    }

    @Test
    fun syncWithTheServerDownReturnsByItsTimeoutAndSaysWhy() = runBlocking {
        val dir = tempDir()
        server.destroy()
        server.waitFor()
        AsyncOffersClient(config(dir), seed).use { client ->
            val began = System.nanoTime()
            val report = client.sync(2.seconds)
            val tookMs = (System.nanoTime() - began) / 1_000_000
            assertTrue("took $tookMs ms", tookMs in 2_000..2_900)
            assertTrue(!report.complete && report.readyOffers == 0u)
            assertTrue(report.unfinished.toString(), report.unfinished.single().reason.startsWith("0 of 3 offers Ready"))
        }
    }

    @Test
    fun aPayersInvoiceRequestForwardedByTheServerReachesTheApp() = runBlocking {
        val forwarded = config(tempDir()).apply { invoiceRequestTarget = InvoiceRequestTarget.CLIENT }
        AsyncOffersClient(forwarded, seed).use { client ->
            client.start()
            client.waitForReadyOffers(3, 30.seconds)
            val shop = client.offerFor("shop")
            val request = async(start = CoroutineStart.UNDISPATCHED) {
                client.events.filterIsInstance<OfferEvent.InvoiceRequestForwarded>().take(1).toList().single()
            }
            fetchAsPayer(listOf(shop))
            val seen = withTimeout(30.seconds) { request.await() }
            assertEquals(shop.offerId, seen.offerId)
            assertEquals(1_000uL, seen.amountMsats)
        }
    }

    /** The file the server keeps [slot]'s invoice in. */
    private fun storedInvoice(slot: UShort): File =
        File(serverData, "invoices/static_invoices").listFiles()!!.single { it.name.substringAfterLast('_') == slot.toString() }

    @Test
    fun checkOffersVerifiesTheOffersAndReportsOneWhoseSlotWasOverwritten() = runBlocking {
        val onlyWhenAsked = config(tempDir(), slots = 2).apply { offerCheckInterval = java.time.Duration.ZERO }
        AsyncOffersClient(onlyWhenAsked, seed).use { client ->
            client.start()
            client.waitForReadyOffers(2, 30.seconds)
            val alice = client.offerFor("alice")
            val bob = client.offerFor("bob")
            val first = client.checkOffers(30.seconds)
            assertTrue(first.toString(), first.complete && first.checked == 2u && first.verified == 2u)
            assertTrue(client.offers().filter { it.label != null }.all { it.verifiedAt != null })
            val broken = async(start = CoroutineStart.UNDISPATCHED) {
                client.events.filterIsInstance<OfferEvent.OfferBroken>().take(1).toList().single()
            }
            // Another install of the wallet (or the server) wrote Bob's invoice into Alice's slot.
            storedInvoice(bob.slot).copyTo(storedInvoice(alice.slot), overwrite = true)
            val second = client.checkOffers(30.seconds)
            assertEquals(second.toString(), 1u, second.broken)
            val seen = withTimeout(30.seconds) { broken.await() }
            assertEquals(alice.offerId, seen.offer.offerId)
            assertTrue(seen.reason, seen.reason.contains("another offer's invoice"))
            val finding = client.status().offerChecks.single { it.offerId == alice.offerId }.finding
            assertTrue(finding, finding.startsWith("broken"))
            assertTrue("Alice's label gets a fresh offer", client.offerFor("alice").offerId != alice.offerId)
        }
    }
}
