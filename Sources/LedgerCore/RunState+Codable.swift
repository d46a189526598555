import Foundation

extension RunState: Codable {
    enum CodingKeys: String, CodingKey {
        case run_id, flow_id, flow_version, definition_hash, status, mode, trigger, actor, input, dedup_key, message_id
        case channel, created_at, started_at, updated_at, finished_at, steps, output, error, phase, completion_order
        case cancel_requested_by, redrives, last_sequence, output_sequence, worker, actor_type, on_behalf_of
        case traceparent
        case ack, delivery
    }

    /// The stored value of `phase` while compensations run (after a failure or a cancel).
    static let compensatingPhase = "compensating"

    /// The phase from what is stored: `status`, `phase` ("compensating" or absent) and `cancel_requested_by`.
    static func phase(status: RunStatus, stored: String?, cancelledBy: String?) -> RunPhase {
        switch status {
        case .pending, .running:
            if let cancelledBy { return .cancelling(actor: cancelledBy) }
            return stored == compensatingPhase ? .compensating : .running
        case .succeeded: return .succeeded
        case .failed: return .failed
        case .cancelled: return .cancelled(actor: cancelledBy ?? "")
        }
    }

    // The phase is stored as it always was: `status`, `phase` ("compensating" or absent) and `cancel_requested_by`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        run_id = try c.decode(String.self, forKey: .run_id)
        flow_id = try c.decode(String.self, forKey: .flow_id)
        flow_version = try c.decode(Int.self, forKey: .flow_version)
        definition_hash = try c.decode(String.self, forKey: .definition_hash)
        phase = Self.phase(
            status: try c.decode(RunStatus.self, forKey: .status),
            stored: try c.decodeIfPresent(String.self, forKey: .phase),
            cancelledBy: try c.decodeIfPresent(String.self, forKey: .cancel_requested_by))
        mode = try c.decode(RunMode.self, forKey: .mode)
        trigger = try c.decode(RunTrigger.self, forKey: .trigger)
        actor = try c.decode(String.self, forKey: .actor)
        input = try c.decode(JSONValue.self, forKey: .input)
        dedup_key = try c.decodeIfPresent(String.self, forKey: .dedup_key)
        message_id = try c.decodeIfPresent(String.self, forKey: .message_id)
        channel = try c.decodeIfPresent(JSONValue.self, forKey: .channel)
        created_at = try c.decode(String.self, forKey: .created_at)
        started_at = try c.decodeIfPresent(String.self, forKey: .started_at)
        updated_at = try c.decode(String.self, forKey: .updated_at)
        finished_at = try c.decodeIfPresent(String.self, forKey: .finished_at)
        steps = try c.decode([StepRecord].self, forKey: .steps)
        output = try c.decodeIfPresent(JSONValue.self, forKey: .output)
        error = try c.decodeIfPresent(RunError.self, forKey: .error)
        completion_order = try c.decode([String].self, forKey: .completion_order)
        redrives = try c.decode(Int.self, forKey: .redrives)
        last_sequence = try c.decode(UInt64.self, forKey: .last_sequence)
        output_sequence = try c.decodeIfPresent(UInt64.self, forKey: .output_sequence)
        worker = try c.decodeIfPresent(String.self, forKey: .worker)
        actor_type = try c.decodeIfPresent(String.self, forKey: .actor_type)
        on_behalf_of = try c.decodeIfPresent(String.self, forKey: .on_behalf_of)
        traceparent = try c.decodeIfPresent(String.self, forKey: .traceparent)
        ack = try c.decodeIfPresent(FlowRunAcknowledged.self, forKey: .ack)
        delivery = try c.decodeIfPresent(DeliveryRecord.self, forKey: .delivery)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(run_id, forKey: .run_id)
        try c.encode(flow_id, forKey: .flow_id)
        try c.encode(flow_version, forKey: .flow_version)
        try c.encode(definition_hash, forKey: .definition_hash)
        try c.encode(status, forKey: .status)
        switch phase {
        case .compensating, .cancelling: try c.encode(Self.compensatingPhase, forKey: .phase)
        case .running, .succeeded, .failed, .cancelled: break
        }
        try c.encodeIfPresent(cancel_requested_by, forKey: .cancel_requested_by)
        try c.encode(mode, forKey: .mode)
        try c.encode(trigger, forKey: .trigger)
        try c.encode(actor, forKey: .actor)
        try c.encode(input, forKey: .input)
        try c.encodeIfPresent(dedup_key, forKey: .dedup_key)
        try c.encodeIfPresent(message_id, forKey: .message_id)
        try c.encodeIfPresent(channel, forKey: .channel)
        try c.encode(created_at, forKey: .created_at)
        try c.encodeIfPresent(started_at, forKey: .started_at)
        try c.encode(updated_at, forKey: .updated_at)
        try c.encodeIfPresent(finished_at, forKey: .finished_at)
        try c.encode(steps, forKey: .steps)
        try c.encodeIfPresent(output, forKey: .output)
        try c.encodeIfPresent(error, forKey: .error)
        try c.encode(completion_order, forKey: .completion_order)
        try c.encode(redrives, forKey: .redrives)
        try c.encode(last_sequence, forKey: .last_sequence)
        try c.encodeIfPresent(output_sequence, forKey: .output_sequence)
        try c.encodeIfPresent(worker, forKey: .worker)
        try c.encodeIfPresent(actor_type, forKey: .actor_type)
        try c.encodeIfPresent(on_behalf_of, forKey: .on_behalf_of)
        try c.encodeIfPresent(traceparent, forKey: .traceparent)
        try c.encodeIfPresent(ack, forKey: .ack)
        try c.encodeIfPresent(delivery, forKey: .delivery)
    }
}
