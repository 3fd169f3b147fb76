import Foundation
import Glibc
import LowRank
@testable import LowRankModels
import Testing

/// Output folders: one writer at a time, and a merge output replaced whole or not at all.
@Suite("Output folders: locking and atomic merge")
struct OutputFolderTests {
    @Test func aSecondWriterIsRefused() throws {
        let model = try LlamaFixtures.model(on: CPUBackend.shared)
        try withTemporaryFolder { folder in
            let out = folder + "/adapter"
            let first = try CheckpointRecoveryTests.trainer(model, output: out)
            #expect { try CheckpointRecoveryTests.trainer(model, output: out) } throws: {
                "\($0)".contains("another writer (pid \(getpid())) is using this output folder")
            }
            // The same folder by another spelling is the same lock.
            #expect(throws: LowRankError.self) { try OutputLock(folder: folder + "/./adapter/") }
            // A merge into it waits for no one: it is refused too.
            let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-llama"))
            #expect { try checkpoint.write(merging: first.adapter, of: model, to: out) } throws: { "\($0)".contains("another writer") }
            _ = first
        }
    }

    @Test func theLockIsFreeAgainAfterItsHolder() throws {
        try withTemporaryFolder { folder in
            let out = folder + "/out"
            do {
                let lock = try OutputLock(folder: out)
                #expect(FileManager.default.fileExists(atPath: lock.path))
            }
            let again = try OutputLock(folder: out)
            again.release()
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty, "the lock file is removed with its lock")
        }
    }

    static func contents(_ folder: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) { out[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)) }
        return out
    }

    /// A merge that fails after its first shard (a NaN in the adapter of a module in the second)
    /// leaves the merged checkpoint already at --out as it was, and no folder or file of its own;
    /// one that succeeds replaces the whole folder.
    @Test func aFailedMergeLeavesTheOldOutput() throws {
        let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-qwen2-bf16"))
        let model = try LlamaModel(checkpoint: checkpoint, on: CPUBackend.shared)
        let adapter = try ModelAdapter(contentsOf: LlamaFixtures.path("qwen2-lora"), on: model)
        let poisoned = "model.layers.1.self_attn.q_proj.weight"
        #expect(try checkpoint.file(containing: poisoned).path == checkpoint.files.last!.file.path, "the poisoned module is in the last shard")
        try withTemporaryFolder { folder in
            let out = folder + "/merged"
            try checkpoint.write(merging: adapter, of: model, to: out)
            try Data([1]).write(to: URL(fileURLWithPath: out + "/stale.txt"))
            let before = try Self.contents(out)
            let b = try #require(adapter.parameters.first { $0.name == ModelAdapter.key("model.layers.1.self_attn.q_proj", "lora_B.weight") }).tensor
            try b.assign([Float](repeating: .nan, count: b.shape.count))
            #expect { try checkpoint.write(merging: adapter, of: model, to: out) } throws: {
                "\($0)".contains(poisoned) && "\($0)".contains("NaN or infinite")
            }
            #expect(try Self.contents(out) == before)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["merged"])
            #expect(throws: LowRankError.self) { try checkpoint.write(merging: adapter, of: model, to: folder + "/a/b/merged") }
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["merged"], "no folder made for a failed merge")

            try b.assign([Float](repeating: 0, count: b.shape.count))
            try checkpoint.write(merging: adapter, of: model, to: out)
            #expect(try Self.contents(out)["stale.txt"] == nil, "a merge replaces the whole folder")
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["merged"])
        }
    }

    /// Replacing --out whole must not take anything but a model folder with it.
    @Test func mergeReplacesOnlyAModelFolder() throws {
        let checkpoint = try HuggingFaceCheckpoint(folder: LlamaFixtures.path("tiny-llama"))
        let model = try LlamaModel(checkpoint: checkpoint, on: CPUBackend.shared)
        let adapter = try ModelAdapter(contentsOf: LlamaFixtures.path("lora"), on: model)
        try withTemporaryFolder { folder in
            try Data([7]).write(to: URL(fileURLWithPath: folder + "/notes.txt"))
            #expect { try checkpoint.write(merging: adapter, of: model, to: folder) } throws: { "\($0)".contains("not a model folder") }
            #expect { try checkpoint.write(merging: adapter, of: model, to: folder + "/notes.txt") } throws: { "\($0)".contains("not a model folder") }
            #expect(try Self.contents(folder) == ["notes.txt": Data([7])])
        }
    }

    /// A model folder as the Hugging Face cache makes it (every file a symbolic link), with a
    /// tokenizer linked to a private file, a FIFO and a folder: the linked files are copied as
    /// regular files with their target's mode; the FIFO (never opened for reading, so nothing
    /// blocks) and the folder are skipped and named.
    @Test func mergeCopiesRegularFilesOnly() throws {
        try withTemporaryFolder { folder in
            // Named as the fixture is, so the adapter's recorded base model matches.
            let source = folder + "/tiny-llama", secret = folder + "/private-tokenizer.json"
            try FileManager.default.createDirectory(atPath: source + "/original", withIntermediateDirectories: true)
            for name in try FileManager.default.contentsOfDirectory(atPath: LlamaFixtures.path("tiny-llama")) {
                try FileManager.default.createSymbolicLink(atPath: source + "/" + name, withDestinationPath: LlamaFixtures.path("tiny-llama") + "/" + name)
            }
            try Data("{\"tokens\":1}".utf8).write(to: URL(fileURLWithPath: secret))
            #expect(chmod(secret, 0o600) == 0)
            try FileManager.default.createSymbolicLink(atPath: source + "/tokenizer.json", withDestinationPath: secret)
            #expect(mkfifo(source + "/events", 0o644) == 0)

            let checkpoint = try HuggingFaceCheckpoint(folder: source)
            let model = try LlamaModel(checkpoint: checkpoint, on: CPUBackend.shared)
            let skipped = try checkpoint.write(merging: try ModelAdapter(contentsOf: LlamaFixtures.path("lora"), on: model), of: model, to: folder + "/merged").skipped
            #expect(skipped.map(\.name) == ["events", "original"])
            #expect(skipped.map(\.kind) == ["a FIFO", "a folder"])
            let copied = folder + "/merged/tokenizer.json"
            var info = stat()
            #expect(lstat(copied, &info) == 0)
            #expect(info.st_mode & S_IFMT == S_IFREG)
            #expect(info.st_mode & 0o777 == 0o600)
            #expect(try Data(contentsOf: URL(fileURLWithPath: copied)) == Data(contentsOf: URL(fileURLWithPath: secret)))
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder + "/merged").sorted() == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"])
        }
    }
}
