import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import AsyncOffers

/// Every test drives the SDK from Swift against the reference server run as its own process.
final class AsyncOffersTests: XCTestCase {
    private var server: Process!
    private var nodeId = ""
    private var address = ""
    private var paths = ""
    private var serverData: URL!
    private let seed = Data(repeating: 0x31, count: 32)
    private var dirs: [URL] = []

    override func setUpWithError() throws {
        let described: InvoiceServer
        (server, described) = try launchServer()
        nodeId = described.nodeId
        address = described.address
        paths = described.pathsHex
    }

    /// Starts a reference server process; returns it and what it hands this wallet.
    private func launchServer() throws -> (Process, InvoiceServer) {
        guard let binary = ProcessInfo.processInfo.environment["ASYNC_OFFERS_SERVER"] else {
            throw XCTSkip("ASYNC_OFFERS_SERVER not set")
        }
        let data = try tempDir()
        serverData = data
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--listen", "127.0.0.1:0", "--data-dir", data.path, "--recipient", "swift"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let json = try JSONSerialization.jsonObject(with: line) as! [String: String]
        return (process, InvoiceServer(nodeId: json["node_id"]!, address: json["address"]!, pathsHex: json["paths"]!))
    }

    override func tearDown() {
        // A test may have stopped it (SIGSTOP): a stopped process would not see the SIGTERM.
        if server.isRunning { kill(server.processIdentifier, SIGCONT) }
        if server.isRunning { server.terminate() }
        server.waitUntilExit()
        for dir in dirs { try? FileManager.default.removeItem(at: dir) }
    }

    private func tempDir(_ prefix: String = "async-offers-swift") throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        dirs.append(dir)
        return dir
    }

    /// Fetches each offer's static invoice from the server as a payer, with the server binary;
    /// returns the lines it printed, one per offer.
    private func fetchAsPayer(_ offers: [Offer]) throws -> [Substring] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ProcessInfo.processInfo.environment["ASYNC_OFFERS_SERVER"]!)
        process.arguments = ["fetch", "--server", "\(nodeId)@\(address)"] + offers.flatMap { ["--offer", $0.offer] }
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let printed = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "the payer got and checked every invoice")
        return String(decoding: printed, as: UTF8.self).split(separator: "\n")
    }

    /// How many offer records the data dir holds now.
    private func recordsOnDisk(_ dir: URL) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("async_offers/offers").path)) ?? []
        return names.filter { !$0.contains(".tmp") }.count
    }

    private func config(_ dir: URL, slots: UInt16 = 3) -> OffersConfig {
        var config = defaultConfig(
            network: .regtest, dataDir: dir.path, serverNodeId: nodeId, serverAddress: address,
            serverPathsHex: paths)
        config.readyOfferTarget = slots
        config.tickInterval = 0.2
        return config
    }

    func testOffersFillAndTheStreamAndTheListenerSeeThemFromAnSdkThread() async throws {
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        let threads = ThreadRecorder()
        client.addListener(threads)
        let stream = client.events()
        try client.start()
        let ready: [Offer] = try await collect(stream) { events in
            let ready = events.compactMap { event -> Offer? in
                if case let .offerReady(offer) = event { return offer }
                return nil
            }
            return ready.count == 3 ? ready : nil
        }
        XCTAssertEqual(Set(ready.map(\.offerId)).count, 3)
        XCTAssertTrue(ready.allSatisfy { $0.offer.hasPrefix("lno1") && $0.state == .ready })
        let waited = try await client.waitForReadyOffers(count: 3, timeout: 30)
        XCTAssertEqual(waited.count, 3)
        XCTAssertFalse(threads.sawMainThread)
        XCTAssertGreaterThan(threads.calls, 0)
    }

    func testTakeOfferNeverReturnsTheSameOfferTwice() async throws {
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        let taken = try (1...3).map { try client.takeOffer(label: "order \($0)") }
        XCTAssertEqual(Set(taken.map(\.offerId)).count, 3)
        XCTAssertTrue(taken.allSatisfy { $0.state == .used })
        XCTAssertEqual(taken.map(\.label), ["order 1", "order 2", "order 3"])
    }

    func testUpdateChannelsRefreshesEveryReadyAndHandedOutOffer() async throws {
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        _ = try client.takeOffer(label: "shop")
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        let offers = Set(client.offers().map(\.offerId))
        let stream = client.events()
        try client.updateChannels([
            ChannelHint(
                lspNodeId: nodeId, shortChannelId: 1 << 40, feeBaseMsat: 1_000,
                feeProportionalMillionths: 100, cltvExpiryDelta: 72, htlcMinimumMsat: 1_000,
                htlcMaximumMsat: 500_000_000)
        ])
        let refreshed: Set<String> = try await collect(stream) { events in
            let refreshed = Set(events.compactMap { event -> String? in
                if case let .invoiceRefreshed(offerId) = event { return offerId }
                return nil
            })
            return refreshed == offers ? refreshed : nil
        }
        XCTAssertEqual(refreshed, offers)
        client.stop()
    }

    func testOfferForKeepsOneOfferPerLabel() async throws {
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        let alice = try client.offerFor(label: "alice")
        XCTAssertEqual(try client.offerFor(label: "alice").offerId, alice.offerId)
        let bob = try client.offerFor(label: "bob")
        let taken = try client.takeOffer()
        XCTAssertEqual(Set([alice.offerId, bob.offerId, taken.offerId]).count, 3)
        XCTAssertEqual(try client.offerFor(label: "alice").offerId, alice.offerId)
        client.stop()
    }

    func testASecondClientOnTheSameDataDirListsTheOffersBeforeConnecting() async throws {
        let dir = try tempDir()
        var first: Set<String> = []
        do {
            let client = try AsyncOffersClient(config: config(dir), seed: seed)
            try client.start()
            first = Set(try await client.waitForReadyOffers(count: 3, timeout: 30).map(\.offerId))
            client.stop()
        }
        server.terminate()
        server.waitUntilExit()
        let again = try AsyncOffersClient(config: config(dir), seed: seed)
        XCTAssertEqual(Set(again.readyOffers().map(\.offerId)), first)
    }

    func testBadServerPathsNodeIdOrSeedThrowClearErrors() throws {
        let dir = try tempDir()
        var bad = config(dir)
        bad.servers[0].pathsHex = "zz"
        XCTAssertThrowsError(try AsyncOffersClient(config: bad, seed: seed)) { error in
            guard case let OffersError.InvalidServerPaths(message) = error else {
                return XCTFail("\(error)")
            }
            XCTAssertTrue(message.contains("hex"), message)
        }
        bad = config(dir)
        bad.servers[0].nodeId = "02abcd"
        XCTAssertThrowsError(try AsyncOffersClient(config: bad, seed: seed)) { error in
            guard case let OffersError.InvalidConfig(message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("node id"), message)
        }
        XCTAssertThrowsError(try AsyncOffersClient(config: config(dir), seed: Data(count: 31))) { error in
            guard case let OffersError.InvalidConfig(message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("31 bytes"), message)
        }
    }

    func testOffersComeFromTheServerThatAnswersWhenAnotherIsDown() async throws {
        // The second server handed out its paths, then went away: nothing listens there now.
        let (gone, goneServer) = try launchServer()
        // SIGKILL: a process started from an async test inherits the blocked SIGTERM of Swift's
        // concurrency threads, so `terminate()` would not end it.
        kill(gone.processIdentifier, SIGKILL)
        gone.waitUntilExit()
        var twoServers = config(try tempDir())
        twoServers.servers.insert(goneServer, at: 0)
        let client = try AsyncOffersClient(config: twoServers, seed: seed)
        try client.start()
        let ready = try await client.waitForReadyOffers(count: 3, timeout: 30)
        XCTAssertEqual(ready.map(\.serverNodeId), [nodeId, nodeId, nodeId])
        XCTAssertEqual(try client.takeOffer(label: "while one is down").serverNodeId, nodeId)
        let servers = client.status().servers
        XCTAssertTrue(servers[0].lastProblem?.contains("cannot connect") == true, "\(servers)")
        XCTAssertFalse(servers[0].connected)
        XCTAssertTrue(servers[1].connected && servers[1].lastProblem == nil)
        XCTAssertTrue(client.status().running)
    }

    func testTheLogWriterReceivesTheSdksRecords() async throws {
        let records = RecordCollector()
        setLogWriter(writer: records, maxLevel: .debug)
        let client = try AsyncOffersClient(config: config(try tempDir(), slots: 1), seed: seed)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 1, timeout: 30)
        client.stop()
        // Records reach the writer on the SDK's log thread.
        for _ in 0..<50 where !records.contains(level: .info, text: "connected to the server") {
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTAssertTrue(records.contains(level: .info, text: "connected to the server"))
    }

    func testALogWriterMayCallTheClient() async throws {
        let writer = CallingBack()
        setLogWriter(writer: writer, maxLevel: .debug)
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        writer.watch(client)
        try client.start()
        let ready = try await client.waitForReadyOffers(count: 3, timeout: 30)
        XCTAssertEqual(ready.count, 3)
        client.stop()
        writer.watch(nil)
        XCTAssertGreaterThan(writer.calls, 0)
    }

    func testOpenWaitsOffTheCallersThreadAndHandsOutAsync() async throws {
        let dir = try tempDir()
        let client = try await AsyncOffersClient.open(config: config(dir), seed: seed)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        let shop = try await client.offerForAsync(label: "shop")
        XCTAssertEqual(try client.offerFor(label: "shop").offerId, shop.offerId)
        let order = try await client.takeOfferAsync(label: "order")
        XCTAssertEqual(order.label, "order")
        do {
            _ = try await AsyncOffersClient.open(config: config(dir), seed: seed)
            XCTFail("opened a data dir in use")
        } catch let OffersError.DataDirInUse(message) {
            XCTAssertTrue(message.contains("in use"), message)
        }
        client.stop()
    }

    func testEventsIteratedAfterStartIncludeWhatCameBefore() async throws {
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        // Iterated only now, as the README's example does: nothing was missed.
        let ready: Set<String> = try await collect(client.events()) { events in
            let ready = Set(events.compactMap { event -> String? in
                if case let .offerReady(offer) = event { return offer.offerId }
                return nil
            })
            return ready.count == 3 ? ready : nil
        }
        XCTAssertEqual(ready.count, 3)
        client.stop()
    }

    func testOutOfRangeArgumentsAndConfigsThrowClearErrors() async throws {
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        for (count, timeout) in [(-1, 1.0), (1, -1.0), (1, Double.nan)] {
            do {
                _ = try await client.waitForReadyOffers(count: count, timeout: timeout)
                XCTFail("waited for \(count) offers within \(timeout) s")
            } catch let OffersError.InvalidArgument(message) {
                XCTAssertTrue(message.contains("must"), message)
            }
        }
        // An infinite timeout is no limit, not a trap (zero offers are there at once).
        let none = try await client.waitForReadyOffers(count: 0, timeout: .infinity)
        XCTAssertEqual(none.count, 0)
        let changes: [(String, (inout OffersConfig) -> Void)] = [
            ("tick_interval", { $0.tickInterval = 0.001 }),
            ("ready_offer_target", { $0.readyOfferTarget = 65_535 }),
            ("offer_expiring_notice", { $0.minOfferPathsLifetime = $0.offerExpiringNotice }),
        ]
        for (named, change) in changes {
            var bad = config(try tempDir())
            change(&bad)
            XCTAssertThrowsError(try AsyncOffersClient(config: bad, seed: seed)) { error in
                guard case let OffersError.InvalidConfig(message) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains(named), message)
            }
        }
        // Durations the bindings cannot carry are refused by name, not trapped on.
        for bad in [-1.0, Double.nan, .infinity] {
            var config = config(try tempDir())
            config.tickInterval = bad
            XCTAssertThrowsError(try AsyncOffersClient(config: config, seed: seed)) { error in
                guard case let OffersError.InvalidArgument(message) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains("tickInterval"), message)
            }
        }
    }

    func testAListenerThatThrowsIsLoggedAndTheSdkKeepsFilling() async throws {
        let records = RecordCollector()
        setLogWriter(writer: records, maxLevel: .warn)
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        client.addListener(ThrowingListener())
        try client.start()
        let ready = try await client.waitForReadyOffers(count: 3, timeout: 30)
        XCTAssertEqual(Set(ready.map(\.offerId)).count, 3)
        // The warning is written on the SDK's event thread, which may still be delivering.
        for _ in 0..<50 where !records.contains(level: .warn, text: "app bug") {
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        client.stop()
        XCTAssertTrue(records.contains(level: .warn, text: "app bug"))
    }

    func testAnOfferBookRestoredInANewDataDirKeepsTheHandedOutOffers() async throws {
        let first = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        try first.start()
        _ = try await first.waitForReadyOffers(count: 3, timeout: 30)
        let published = try first.offerFor(label: "bio")
        let book = try first.exportOffers()
        first.stop()

        let restored = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        do {
            _ = try restored.importOffers(Data([1, 2, 3]))
            XCTFail("imported bytes that are no offer book")
        } catch let OffersError.InvalidOfferBook(message) {
            XCTAssertTrue(message.contains("offer book"), message)
        }
        XCTAssertEqual(try restored.importOffers(book).imported, 1)
        XCTAssertEqual(try restored.offerFor(label: "bio").offerId, published.offerId)
        XCTAssertEqual(try restored.importOffers(book).imported, 0)
    }

    func testABookOfAnotherWalletIsRefusedAndChangesNothing() async throws {
        let theirs = try AsyncOffersClient(config: config(try tempDir(), slots: 1), seed: Data(repeating: 0x42, count: 32))
        try theirs.start()
        _ = try await theirs.waitForReadyOffers(count: 1, timeout: 30)
        _ = try theirs.offerFor(label: "theirs")
        let theirBook = try theirs.exportOffers()
        theirs.stop()

        let ours = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        try ours.start()
        _ = try await ours.waitForReadyOffers(count: 3, timeout: 30)
        // Ids, states and labels: a refresh may change a confirmation time meanwhile.
        let kept = { ours.offers().map { "\($0.offerId) \($0.state) \($0.label ?? "")" }.sorted() }
        let before = kept()
        do {
            _ = try ours.importOffers(theirBook)
            XCTFail("imported another wallet's book")
        } catch let OffersError.InvalidOfferBook(message) {
            XCTAssertTrue(message.contains("not made by this wallet"), message)
        }
        XCTAssertEqual(kept(), before)
        ours.stop()
    }

    func testEventsCarryIdsAndHandlingOneRemovesThatOneOnly() async throws {
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        let first = try XCTUnwrap(client.nextEvent(), "no event after a fill")
        XCTAssertEqual(client.nextEvent(), first, "the front stays until handled")
        try client.eventHandled(id: first.id + 1_000_000)
        XCTAssertEqual(client.nextEvent(), first, "an unknown id removes nothing")
        try client.eventHandled(id: first.id)
        let second = try XCTUnwrap(client.nextEvent(), "no second event")
        XCTAssertNotEqual(first.id, second.id)
        try client.eventHandled(id: first.id)
        XCTAssertEqual(client.nextEvent(), second, "handled twice, removed once")
        client.stop()
    }

    func testTheEventSequenceWaitsOutADataDirHeldElsewhereWithoutRepeatingOrEnding() async throws {
        let dir = try tempDir()
        var forwarded = config(dir)
        forwarded.invoiceRequestTarget = .client
        let client = try AsyncOffersClient(config: forwarded, seed: seed)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        // A payer's request, kept in the data dir until handled, among events kept in memory.
        _ = try fetchAsPayer([try client.offerFor(label: "shop")])
        var events = client.events().makeAsyncIterator()
        var before: [OfferEvent] = []
        while true {
            guard let event = await events.next() else { return XCTFail("the sequence ended") }
            before.append(event)
            if case .invoiceRequestForwarded = event { break }
        }
        client.stop()
        // Another client (an app extension) holds the data dir: the request's handling cannot
        // be written until it lets go.
        let holder = try AsyncOffersClient(config: config(dir), seed: seed)
        try holder.start()
        let following = Task { [events] in
            var events = events
            return (await events.next(), Date())
        }
        try await Task.sleep(nanoseconds: 1_500_000_000)
        let letGoAt = Date()
        holder.stop()
        let (next, deliveredAt) = await following.value
        XCTAssertNotNil(next, "the sequence went on")
        if case .invoiceRequestForwarded = next { XCTFail("delivered again") }
        XCTAssertGreaterThan(deliveredAt, letGoAt, "the next came once the request's handling was written")
    }

    func testARemovedListenerHearsNothingMoreAndIsLetGoOf() async throws {
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        let kept = ThreadRecorder()
        var removed: ThreadRecorder? = ThreadRecorder()
        weak var letGo = removed
        client.addListener(kept)
        let id = client.addListener(removed!)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        for _ in 0..<100 where removed!.calls < 3 { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertEqual(removed!.calls, 3)
        XCTAssertTrue(client.removeListener(id))
        XCTAssertFalse(client.removeListener(id), "removed once")
        removed = nil
        // The SDK's event thread may still hold the snapshot it last called it from.
        for _ in 0..<100 where letGo != nil { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertNil(letGo, "the SDK holds it no longer")
        _ = try client.takeOffer(label: "after the removal")
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        for _ in 0..<100 where kept.calls < 4 { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertEqual(kept.calls, 4, "the one kept heard the replacement")
        client.stop()
    }

    func testASecondClientOnADataDirInUseIsRefused() async throws {
        let dir = try tempDir()
        let running = try AsyncOffersClient(config: config(dir), seed: seed)
        try running.start()
        _ = try await running.waitForReadyOffers(count: 3, timeout: 30)
        do {
            _ = try AsyncOffersClient(config: config(dir), seed: seed)
            XCTFail("a second client on a data dir in use")
        } catch let OffersError.DataDirInUse(message) {
            XCTAssertTrue(message.contains("in use"), message)
        }
        running.stop()
        let after = try AsyncOffersClient(config: config(dir), seed: seed)
        XCTAssertEqual(after.readyOffers().count, 3)
    }

    func testAWaitThatCannotBeMetEndsWithATimeoutError() async throws {
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        do {
            _ = try await client.waitForReadyOffers(count: 1, timeout: 0.3)
            XCTFail("ready offers without starting")
        } catch let OffersError.Timeout(message) {
            XCTAssertTrue(message.contains("timed out"), message)
        }
    }

    func testAnLdkNodeWalletsMnemonicAndSeedBytesGiveItsNode() throws {
        let words = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
        // BIP39's vector: the 64 seed bytes of these words with the passphrase "TREZOR".
        let hex = "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
        var bytes = Data()
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        func nodeOf(_ seed: WalletSeed) throws -> String {
            let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed.keysManagerSeed())
            // The SDK's own connection has an id of its own, never the node's.
            XCTAssertTrue(client.transportNodeId.count == 66 && client.transportNodeId != client.nodeId)
            return client.nodeId
        }
        let fromWords = try nodeOf(try WalletSeed.fromLdkNodeMnemonic(words: words, passphrase: "TREZOR"))
        XCTAssertEqual(fromWords, try nodeOf(try WalletSeed.fromLdkNodeSeedBytes(seed: bytes)))
        // ldk-node's seed file holds those 64 bytes; the 32 they make go back in as they are.
        let seedFile = try tempDir().appendingPathComponent("keys_seed")
        try bytes.write(to: seedFile)
        let fromFile = try WalletSeed.fromLdkNodeSeedFile(path: seedFile.path)
        XCTAssertEqual(fromWords, try nodeOf(fromFile))
        XCTAssertEqual(fromWords, try nodeOf(try WalletSeed.fromKeysManagerSeed(seed: fromFile.keysManagerSeed())))
        XCTAssertNotEqual(fromWords, try nodeOf(try WalletSeed.fromLdkNodeMnemonic(words: words, passphrase: nil)))
        XCTAssertThrowsError(try WalletSeed.fromLdkNodeSeedBytes(seed: Data(count: 32))) { error in
            guard case let OffersError.InvalidArgument(message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("64 bytes"), message)
        }
    }
    func testSyncWithoutATimeLimitRunsUntilItsWorkIsDone() async throws {
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        let report = try await client.sync(timeout: .infinity)
        XCTAssertTrue(report.complete, "\(report)")
        XCTAssertEqual(report.readyOffers, 3)
    }

    func testSyncFillsAClientNeverStartedOnDiskAndLeavesItStopped() async throws {
        // Each fsync there takes 300 ms longer (test.sh preloads bindings/testing/slow_fsync.c).
        let dir = try tempDir("slow-disk")
        let client = try AsyncOffersClient(config: config(dir), seed: seed)
        client.setBestBlockHeight(200)
        let report = try await client.sync(timeout: 25)
        // The moment it returns: everything it reports is in the data dir.
        XCTAssertEqual(recordsOnDisk(dir), 3)
        XCTAssertTrue(report.complete && report.unfinished.isEmpty, "\(report)")
        XCTAssertEqual(report.readyOffers, 3)
        XCTAssertLessThan(report.elapsed, 25)
        XCTAssertFalse(client.status().running, "stopped again")
        XCTAssertEqual(try fetchAsPayer(client.readyOffers()).count, 3)
        do {
            _ = try await client.sync(timeout: -1)
            XCTFail("took a negative timeout")
        } catch let OffersError.InvalidArgument(message) {
            XCTAssertTrue(message.contains("negative"), message)
        }
    }

    func testSyncRefreshesAHandedOutOffersDueInvoice() async throws {
        var shortRefresh = config(try tempDir(), slots: 1)
        shortRefresh.invoiceRefreshInterval = 2
        let client = try AsyncOffersClient(config: shortRefresh, seed: seed)
        let filled = try await client.sync(timeout: 25)
        XCTAssertTrue(filled.complete)
        let bio = try client.offerFor(label: "bio")
        let refilled = try await client.sync(timeout: 25)
        XCTAssertTrue(refilled.complete)
        try await Task.sleep(nanoseconds: 2_100_000_000)
        let report = try await client.sync(timeout: 25)
        XCTAssertTrue(report.complete, "\(report)")
        XCTAssertEqual(report.refreshed, 1)
        let now = client.offers().first { $0.offerId == bio.offerId }!
        XCTAssertGreaterThan(now.invoiceConfirmedAt!, bio.invoiceConfirmedAt!)
    }

    /// Runs `call` in a task, cancels the task after `after` seconds, and returns what the task
    /// threw and how long after the cancel it ended.
    private func cancelled<T>(after: Double, _ call: @escaping @Sendable () async throws -> T) async -> (Error?, TimeInterval) {
        let work = Task { try await call() }
        try? await Task.sleep(nanoseconds: UInt64(after * 1e9))
        let cancelledAt = Date()
        work.cancel()
        let result = await work.result
        let took = Date().timeIntervalSince(cancelledAt)
        if case let .failure(error) = result { return (error, took) }
        return (nil, took)
    }

    /// Whether the data dir's lock file is free, as another process would find it.
    private func dataDirLockIsFree(_ dir: URL) -> Bool {
        let fd = open(dir.appendingPathComponent("async-offers.lock").path, O_RDONLY)
        defer { close(fd) }
        return fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0
    }

    func testTheBackgroundTaskRecipeEndsASyncWithAServerThatNeverAnswersWhenTimeRunsOut() async throws {
        // The server's process is stopped: the kernel accepts the connection, nobody answers.
        kill(server.processIdentifier, SIGSTOP)
        defer { kill(server.processIdentifier, SIGCONT) }
        let dir = try tempDir()
        let client = try AsyncOffersClient(config: config(dir), seed: seed)
        let task = BackgroundTaskStandIn { self.dataDirLockIsFree(dir) }
        // The README's recipe, as the BGTaskScheduler's launch handler.
        let work = Task {
            let report = try? await client.sync(timeout: 30)
            if !Task.isCancelled { task.setTaskCompleted(success: report?.complete ?? false) }
        }
        task.expirationHandler = {
            work.cancel()
            Task {
                _ = await work.value
                task.setTaskCompleted(success: false)
            }
        }
        try await Task.sleep(nanoseconds: 500_000_000)
        let expiredAt = Date()
        task.expirationHandler?()
        let completions = await task.completions()
        XCTAssertEqual(completions.map(\.success), [false], "completed once, at the expiration")
        let took = completions[0].at.timeIntervalSince(expiredAt)
        XCTAssertLessThan(took, 0.5, "the sync ended when its task was cancelled")
        XCTAssertTrue(completions[0].lockWasFree, "completed with the data dir let go of")
        XCTAssertFalse(client.status().running)
        // As after stop(): another client takes the data dir without waiting for one.
        var noWait = config(dir)
        noWait.dataDirLockWait = 0
        try AsyncOffersClient(config: noWait, seed: seed).start()
    }

    func testCancellingCallsWaitingForTheDataDirEndsThem() async throws {
        let dir = try tempDir()
        var waiting = config(dir)
        waiting.dataDirLockWait = 30
        let patient = waiting
        // Made while the data dir is free, then left stopped: its hand-outs take the lock.
        let idle = try AsyncOffersClient(config: patient, seed: seed)
        let holder = try AsyncOffersClient(config: config(dir), seed: seed)
        try holder.start()
        let calls: [(String, @Sendable () async throws -> Void)] = [
            ("open", { _ = try await AsyncOffersClient.open(config: patient, seed: self.seed) }),
            ("takeOfferAsync", { _ = try await idle.takeOfferAsync(label: "cancelled") }),
            ("offerForAsync", { _ = try await idle.offerForAsync(label: "cancelled") }),
            ("sync", { _ = try await idle.sync(timeout: 30) }),
            ("waitForReadyOffers", { _ = try await idle.waitForReadyOffers(count: 100, timeout: .infinity) }),
        ]
        for (name, call) in calls {
            let (error, took) = await cancelled(after: 0.3, call)
            XCTAssertTrue(error is CancellationError, "\(name): \(String(describing: error))")
            XCTAssertLessThan(took, 0.5, "\(name) ended when its task was cancelled")
        }
        // The calls cancelled gave up their waits: the holder stops, and a client that will
        // not wait gets the data dir, none of them having taken it meanwhile.
        holder.stop()
        var noWait = config(dir)
        noWait.dataDirLockWait = 0
        try AsyncOffersClient(config: noWait, seed: seed).start()
        XCTAssertTrue(idle.offers().allSatisfy { $0.label == nil }, "nothing handed out")
    }

    func testSyncWithTheServerDownReturnsByItsTimeoutAndSaysWhy() async throws {
        server.terminate()
        server.waitUntilExit()
        let client = try AsyncOffersClient(config: config(try tempDir()), seed: seed)
        let began = Date()
        let report = try await client.sync(timeout: 2)
        let took = Date().timeIntervalSince(began)
        XCTAssertTrue(took >= 2 && took < 2.9, "took \(took) s")
        XCTAssertFalse(report.complete)
        XCTAssertEqual(report.readyOffers, 0)
        XCTAssertEqual(report.unfinished.count, 1, "\(report.unfinished)")
        XCTAssertTrue(report.unfinished[0].reason.hasPrefix("0 of 3 offers Ready"), report.unfinished[0].reason)
    }

    func testAPayersInvoiceRequestForwardedByTheServerReachesTheApp() async throws {
        var forwarded = config(try tempDir())
        forwarded.invoiceRequestTarget = .client
        let client = try AsyncOffersClient(config: forwarded, seed: seed)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 3, timeout: 30)
        let shop = try client.offerFor(label: "shop")
        _ = try fetchAsPayer([shop])
        let (offerId, amount): (String, UInt64?) = try await collect(client.events()) { events in
            for case let .invoiceRequestForwarded(offerId, amountMsats, _) in events {
                return (offerId, amountMsats)
            }
            return nil
        }
        XCTAssertEqual(offerId, shop.offerId)
        XCTAssertEqual(amount, 1_000)
    }

    /// The file the server keeps `slot`'s invoice in.
    private func storedInvoice(_ slot: UInt16) throws -> URL {
        let dir = serverData.appendingPathComponent("invoices/static_invoices")
        let name = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .first { $0.split(separator: "_").last.map(String.init) == String(slot) }
        return dir.appendingPathComponent(try XCTUnwrap(name))
    }

    func testCheckOffersVerifiesTheOffersAndReportsOneWhoseSlotWasOverwritten() async throws {
        var onlyWhenAsked = config(try tempDir(), slots: 2)
        onlyWhenAsked.offerCheckInterval = 0
        let client = try AsyncOffersClient(config: onlyWhenAsked, seed: seed)
        try client.start()
        _ = try await client.waitForReadyOffers(count: 2, timeout: 30)
        let alice = try client.offerFor(label: "alice")
        let bob = try client.offerFor(label: "bob")
        let first = try await client.checkOffers(timeout: 30)
        XCTAssertTrue(first.complete && first.checked == 2 && first.verified == 2, "\(first)")
        XCTAssertTrue(client.offers().filter { $0.label != nil }.allSatisfy { $0.verifiedAt != nil })
        // Another install of the wallet (or the server) wrote Bob's invoice into Alice's slot.
        let bobs = try Data(contentsOf: try storedInvoice(bob.slot))
        try bobs.write(to: try storedInvoice(alice.slot))
        let second = try await client.checkOffers(timeout: 30)
        XCTAssertEqual(second.broken, 1, "\(second)")
        let (offerId, reason): (String, String) = try await collect(client.events()) { events in
            for case let .offerBroken(offer, reason) in events {
                return (offer.offerId, reason)
            }
            return nil
        }
        XCTAssertEqual(offerId, alice.offerId)
        XCTAssertTrue(reason.contains("another offer's invoice"), reason)
        let finding = client.status().offerChecks.first { $0.offerId == alice.offerId }?.finding
        XCTAssertTrue(finding?.hasPrefix("broken") == true, "\(String(describing: finding))")
        XCTAssertNotEqual(try client.offerFor(label: "alice").offerId, alice.offerId, "a fresh offer for her label")
        client.stop()
    }
}

private final class ThreadRecorder: OfferListener, @unchecked Sendable {
    private let lock = NSLock()
    private(set) var calls = 0
    private(set) var sawMainThread = false

    func onEvent(event: OfferEvent) {
        guard case .offerReady = event else { return }
        lock.lock()
        calls += 1
        sawMainThread = sawMainThread || Thread.isMainThread
        lock.unlock()
    }
}

private struct StreamTimedOut: Error {}

/// Gathers `stream`'s events until `done` makes something of them, or throws after `timeout`
/// seconds so a missing event fails the test instead of hanging it.
private func collect<T: Sendable>(
    _ stream: AsyncOffersClient.Events, timeout: Double = 30,
    done: @escaping @Sendable ([OfferEvent]) -> T?
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask {
            var events: [OfferEvent] = []
            for await event in stream {
                events.append(event)
                if let result = done(events) { return result }
            }
            throw StreamTimedOut()
        }
        group.addTask {
            try await Task.sleep(nanoseconds: UInt64(timeout * 1_000_000_000))
            throw StreamTimedOut()
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

private struct AppBug: Error, CustomStringConvertible {
    var description: String { "app bug" }
}

private final class ThrowingListener: OfferListener, @unchecked Sendable {
    func onEvent(event: OfferEvent) throws { throw AppBug() }
}

/// A log writer that calls the client back on every record.
private final class CallingBack: LogWriter, @unchecked Sendable {
    private let lock = NSLock()
    private var client: AsyncOffersClient?
    private(set) var calls = 0

    func watch(_ client: AsyncOffersClient?) {
        lock.lock()
        self.client = client
        lock.unlock()
    }

    func log(record: LogRecord) {
        lock.lock()
        let client = self.client
        calls += 1
        lock.unlock()
        _ = client?.offers()
    }
}

private final class RecordCollector: LogWriter, @unchecked Sendable {
    private let lock = NSLock()
    private var records: [LogRecord] = []

    func log(record: LogRecord) {
        lock.lock()
        records.append(record)
        lock.unlock()
    }

    func contains(level: LogLevel, text: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return records.contains { $0.level == level && $0.message.contains(text) }
    }
}

/// What the README's recipe uses of a `BGTask`: its expiration handler and its completion,
/// each recorded with its time and whether the data dir's lock was free at that moment.
private final class BackgroundTaskStandIn: @unchecked Sendable {
    struct Completion { let success: Bool; let at: Date; let lockWasFree: Bool }
    var expirationHandler: (() -> Void)?
    private let lockIsFree: () -> Bool
    private let lock = NSLock()
    private var completed: [Completion] = []

    init(lockIsFree: @escaping () -> Bool) {
        self.lockIsFree = lockIsFree
    }

    func setTaskCompleted(success: Bool) {
        let completion = Completion(success: success, at: Date(), lockWasFree: lockIsFree())
        lock.withLock { completed.append(completion) }
    }

    /// The completions so far, once there is one (or after 5 s).
    func completions() async -> [Completion] {
        for _ in 0..<500 where lock.withLock({ completed.isEmpty }) {
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        // A second completion would come right after the first.
        try? await Task.sleep(nanoseconds: 100_000_000)
        return lock.withLock { completed }
    }
}
