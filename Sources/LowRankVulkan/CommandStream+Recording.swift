import CVulkan

/// A plan's run recorded once into a command buffer of its own and submitted again on later runs
/// (`VulkanBackend.run(repeating:replayable:_:)`): its descriptor sets, push constants and barriers
/// are the same every run, as its buffers are, and what changes (the run's dropout seed, the
/// rates and bias corrections of the AdamW step it ends with) is in the step scalars, which the
/// recording copies first from host-visible bytes of its own, written before each submission: a
/// training step is one submission. A recording starts with a barrier after everything submitted
/// before it, and the stream takes up the hazards of its last commands after it, as if it had
/// recorded them.
extension CommandStream {
    /// The recording being captured.
    struct Capture {
        var owner: ObjectIdentifier
        var key: [UInt64]
        var submission: Submission
        var barriersBefore: Int
        /// Something it recorded is not the same every run (a staged upload, a step scalar set
        /// within it, a submit it needed): it runs once and is not kept.
        var broken = false
    }

    /// The recordings kept per owner: one per input slot of a plan (`CausalLMPlan.inputSlots`).
    static let recordingsPerOwner = 2

    /// Submits `owner`'s recording for `key` again, the step scalars written into the
    /// host-visible bytes it copies from (else after an update of the step scalars in a submission
    /// before it), and returns true; false when there is none.
    func replay(_ owner: ObjectIdentifier, key: [UInt64]) throws -> Bool {
        guard let s = recordings[owner]?.first(where: { $0.key == key })?.submission else { return false }
        // Its last submission read the stage: the run two steps before, with two recordings in turn.
        if s.inFlight { try wait(s) }
        if let stage = s.scalarStage, let bytes = stage.mapped {
            stepScalars.copySet(stage.byteCount, to: bytes)
            stepScalars.markRecorded(0..<stage.byteCount)
        } else {
            _ = try flushStepScalars()
        }
        try submit()
        try enqueue(s)
        (writtenSinceBarrier, readSinceBarrier) = s.endState
        dispatchCount += s.dispatches
        barrierCount += s.barriers
        replayCount += 1
        return true
    }

    /// Starts recording `owner`'s run for `key` into a command buffer of its own, after submitting
    /// what was recorded before (with the step scalars' changed words). With `scalarStage`,
    /// host-visible bytes as many as the host has set, the recording copies the step scalars from
    /// it first, so that a replay needs no submission before it to set them.
    func beginRecording(_ owner: ObjectIdentifier, key: [UInt64], scalarStage: VulkanStorage?) throws {
        _ = try flushStepScalars()
        try submit()
        // The host writes the stage below: like any host write, only once no command touches its range.
        if let scalarStage { try finish(touching: scalarStage) }
        let s = try Submission(device: device, pool: pool, timestamps: false)
        s.keepsCommands = true
        var info = VkCommandBufferBeginInfo()
        info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        try vkCheck(vkBeginCommandBuffer(s.commandBuffer, &info), "vkBeginCommandBuffer")
        capture = Capture(owner: owner, key: key, submission: s, barriersBefore: barrierCount)
        isRecording = true
        barrier()
        if let scalarStage, let bytes = scalarStage.mapped {
            stepScalars.copySet(scalarStage.byteCount, to: bytes)
            s.scalarStage = scalarStage
            let source = BufferAccess(scalarStage, writes: false, size: scalarStage.byteCount)
            let destination = stepScalars.access(0..<scalarStage.byteCount, writes: true)
            order([source, destination])
            var region = VkBufferCopy(srcOffset: VkDeviceSize(source.lower), dstOffset: VkDeviceSize(destination.lower), size: VkDeviceSize(source.size))
            vkCmdCopyBuffer(commandBuffer, source.buffer, destination.buffer, 1, &region)
        }
    }

    /// Submits the recording being captured and keeps it, unless it is broken or `keep` is false
    /// (its run failed); a no-op when none is.
    func endRecording(keep: Bool = true) throws {
        guard let c = capture else { return }
        capture = nil
        isRecording = false
        let s = c.submission
        s.barriers = barrierCount - c.barriersBefore
        s.endState = (writtenSinceBarrier, readSinceBarrier)
        try end(s)
        try enqueue(s)
        guard keep && !c.broken else {
            // Freed once it has run.
            try wait(s)
            s.free(device, pool)
            return
        }
        var kept = recordings[c.owner, default: []]
        kept.append((c.key, s))
        if kept.count > Self.recordingsPerOwner {
            let oldest = kept.removeFirst().submission
            if oldest.inFlight { try wait(oldest) }
            oldest.free(device, pool)
        }
        recordings[c.owner] = kept
    }

    /// Frees `owner`'s recordings, once they have run.
    func forgetRecordings(of owner: ObjectIdentifier) throws {
        for kept in recordings.removeValue(forKey: owner) ?? [] {
            if kept.submission.inFlight { try wait(kept.submission) }
            kept.submission.free(device, pool)
        }
    }

    /// Frees every recording; only while none is in flight (their descriptor sets are being reset).
    func forgetRecordings() {
        for kept in recordings.values.joined() { kept.submission.free(device, pool) }
        recordings.removeAll()
    }
}
