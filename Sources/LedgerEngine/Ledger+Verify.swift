public import LedgerCore
import LedgerNATS

extension Ledger {
    /// Reads the log once, in order (only `subject`, wildcards allowed, when given), through a `LogVerifier`: broken
    /// hash chains, subjects missing their first event, deleted sequences and unreadable messages on run and flow
    /// subjects. `progress` is called after each batch with the number of messages read. Throws when the log cannot
    /// be read.
    public func verify(
        subject: String? = nil, batchSize: Int = 1000, progress: (@Sendable (Int) -> Void)? = nil
    ) async throws -> LogVerifier {
        let info = try await api.streamInfo(stream)
        var deleted: [UInt64] = []
        if subject != nil, (info.state.num_deleted ?? 0) > 0 {
            deleted = try await api.streamInfoWithDeleted(stream).state.deleted ?? []
        }
        var verifier = LogVerifier(
            contiguous: subject == nil, firstStreamSequence: info.state.first_seq, deleted: deleted)
        var iterator = messages(subject: subject, batchSize: batchSize).makeAsyncIterator()
        while let batch = try await iterator.nextBatch() {
            for message in batch {
                verifier.check(sequence: message.sequence, subject: message.subject, payload: message.payload)
            }
            progress?(verifier.messages)
        }
        verifier.finish(lastStreamSequence: info.state.last_seq)
        return verifier
    }
}
