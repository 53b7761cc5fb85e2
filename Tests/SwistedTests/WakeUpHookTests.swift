// Swisted's global-enqueue hook (Sources/Swisted/Reactor/WakeUpHook.swift) in
// a process where another hook was installed first: the `swisted-hook-check`
// helper, a child process (the hook is process-wide and installed once).

import Foundation
import Testing

@Suite("Wake-up hook after another global-enqueue hook", .timeLimit(.minutes(1)))
struct WakeUpHookTests {
    @Test("installed over another hook: an actor's wake-ups still run on the reactor, every other job reaches the earlier hook")
    func chainsToAnEarlierHook() throws {
        let helper = helperDirectory.appendingPathComponent("swisted-hook-check")
        try #require(FileManager.default.isExecutableFile(atPath: helper.path),
                     "swisted-hook-check is not built; run `swift build --build-tests` (or `make test`) first")
        let process = Process()
        let output = Pipe()
        process.executableURL = helper
        process.arguments = ["200"]
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + 30) { kill(pid, SIGKILL) }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()

        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 1)
            if words.count == 2 { values[String(words[0])] = String(words[1]) }
        }
        #expect(values["ROUNDS"] == "200", "\(text)")
        // Only the task's entry into the actor may come from another thread:
        // each wake-up was taken on the reactor, although another hook was there first.
        #expect(Int(values["CROSS"] ?? "") ?? .max <= 2, "\(text)")
        // Swisted's hook passed the other jobs on to the earlier hook.
        #expect(Int(values["PASSED_ON"] ?? "") ?? 0 >= 1, "\(text)")
        #expect(values["ON_TOP"] == "yes", "\(text)")
        #expect(process.terminationStatus == 0, "\(text)")
    }
}
