// The hand-written JSON coding of every event body, the records of the read models, and what they hold. Each
// object's fields are written in ascending key order, the order `JSONEncoder`'s `.sortedKeys` gives, so the bytes
// equal what the `Codable` forms wrote into existing logs (`JSONCodecTests` checks each type against Foundation).

extension RunMode: JSONStringEnum {}
extension RunTrigger.Kind: JSONStringEnum {}
extension RunStatus: JSONStringEnum {}
extension StepStatus: JSONStringEnum {}
extension FlowStatus: JSONStringEnum {}
extension ScheduleFiring.Outcome: JSONStringEnum {}
extension FlowOutputProduced.Kind: JSONStringEnum {}

extension StepErrorKind: JSONReadable {
    public init(json: JSONValue) throws(JSONShapeError) { self.init(try String(json: json)) }
}

extension AssistantCommandIssued: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("channel", channel)
            w.field("entities", entities)
            w.field("intent", intent)
            w.field("message_id", message_id)
            w.field("signal_id", signal_id)
            w.field("user", user)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.message_id = try f.string("message_id")
        self.intent = try f.string("intent")
        self.entities = try f.json("entities")
        self.user = try f.value("user")
        self.channel = try f.value("channel")
        self.signal_id = try f.optionalString("signal_id")
    }
}

extension AssistantCommandIssued.User: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("id", id)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.id = try f.string("id")
    }
}

extension AssistantCommandIssued.Channel: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("conversation_id", conversation_id)
            w.field("type", type)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.type = try f.string("type")
        self.conversation_id = try f.string("conversation_id")
    }
}

extension RunTrigger: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("data", data)
            w.field("event_id", event_id)
            w.field("event_type", event_type)
            w.field("kind", kind)
            w.field("scheduled_at", scheduled_at)
            w.field("sequence", sequence)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.kind = try f.value("kind")
        self.event_type = try f.optionalString("event_type")
        self.event_id = try f.optionalString("event_id")
        self.sequence = try f.optional("sequence")
        self.data = try f.optional("data")
        self.scheduled_at = try f.optionalString("scheduled_at")
    }
}

extension FlowRunStarted: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("actor", actor)
            w.field("actor_type", actor_type)
            w.field("channel", channel)
            w.field("dedup_key", dedup_key)
            w.field("definition_hash", definition_hash)
            w.field("flow_id", flow_id)
            w.field("flow_version", flow_version)
            w.field("input", input)
            w.field("input_source", input_source)
            w.field("message_id", message_id)
            w.field("mode", mode)
            w.field("on_behalf_of", on_behalf_of)
            w.field("run_id", run_id)
            w.field("step_ids", step_ids)
            w.field("traceparent", traceparent)
            w.field("trigger", trigger)
            w.field("worker", worker)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.run_id = try f.string("run_id")
        self.flow_id = try f.string("flow_id")
        self.flow_version = try f.value("flow_version")
        self.definition_hash = try f.string("definition_hash")
        self.mode = try f.value("mode")
        self.trigger = try f.value("trigger")
        self.actor = try f.string("actor")
        self.input = try f.json("input")
        self.step_ids = try f.value("step_ids")
        self.dedup_key = try f.optionalString("dedup_key")
        self.message_id = try f.optionalString("message_id")
        self.channel = try f.optional("channel")
        self.input_source = try f.optionalString("input_source")
        self.worker = try f.optionalString("worker")
        self.actor_type = try f.optionalString("actor_type")
        self.on_behalf_of = try f.optionalString("on_behalf_of")
        self.traceparent = try f.optionalString("traceparent")
    }
}

extension StepAttemptStarted: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("attempt", attempt)
            w.field("command_id", command_id)
            w.field("idempotency_key", idempotency_key)
            w.field("request", request)
            w.field("started_at", started_at)
            w.field("step_id", step_id)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.step_id = try f.string("step_id")
        self.attempt = try f.value("attempt")
        self.idempotency_key = try f.string("idempotency_key")
        self.command_id = try f.optionalString("command_id")
        self.started_at = try f.string("started_at")
        self.request = try f.optional("request")
    }
}

extension StepAttemptSucceeded: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("attempt", attempt)
            w.field("finished_at", finished_at)
            w.field("output", output)
            w.field("source_sequence", source_sequence)
            w.field("started_at", started_at)
            w.field("step_id", step_id)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.step_id = try f.string("step_id")
        self.attempt = try f.value("attempt")
        self.output = try f.json("output")
        self.started_at = try f.string("started_at")
        self.finished_at = try f.string("finished_at")
        self.source_sequence = try f.optional("source_sequence")
    }
}

extension StepLateResultRecorded: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("attempt", attempt)
            w.field("compensable", compensable)
            w.field("output", output)
            w.field("received_at", received_at)
            w.field("source_sequence", source_sequence)
            w.field("step_id", step_id)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.step_id = try f.string("step_id")
        self.attempt = try f.value("attempt")
        self.output = try f.json("output")
        self.received_at = try f.string("received_at")
        self.source_sequence = try f.optional("source_sequence")
        self.compensable = try f.value("compensable")
    }
}

extension StepError: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("kind", kind)
            w.field("message", message)
            w.field("retryable", retryable)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.kind = try f.value("kind")
        self.message = try f.string("message")
        self.retryable = try f.value("retryable")
    }
}

extension StepAttemptFailed: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("attempt", attempt)
            w.field("error", error)
            w.field("finished_at", finished_at)
            w.field("retry_at", retry_at)
            w.field("source_sequence", source_sequence)
            w.field("started_at", started_at)
            w.field("step_id", step_id)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.step_id = try f.string("step_id")
        self.attempt = try f.value("attempt")
        self.error = try f.value("error")
        self.started_at = try f.string("started_at")
        self.finished_at = try f.string("finished_at")
        self.retry_at = try f.optionalString("retry_at")
        self.source_sequence = try f.optional("source_sequence")
    }
}

extension StepSkipped: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("reason", reason)
            w.field("step_id", step_id)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.step_id = try f.string("step_id")
        self.reason = try f.string("reason")
    }
}

extension RunError: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("code", code)
            w.field("message", message)
            w.field("step_id", step_id)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.code = try f.string("code")
        self.message = try f.string("message")
        self.step_id = try f.optionalString("step_id")
    }
}

extension FlowRunSucceeded: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("output", output)
            w.field("webhook", webhook)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.output = try f.json("output")
        self.webhook = try f.optionalString("webhook")
    }
}

extension FlowRunFailed: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("error", error)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.error = try f.value("error")
    }
}

extension FlowRunCompensating: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("error", error)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.error = try f.value("error")
    }
}

extension FlowRunCancelRequested: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("actor", actor)
            w.field("actor_type", actor_type)
            w.field("reason", reason)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.actor = try f.string("actor")
        self.reason = try f.optionalString("reason")
        self.actor_type = try f.optionalString("actor_type")
    }
}

extension FlowRunCancelled: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("actor", actor)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.actor = try f.string("actor")
    }
}

extension RunClaimed: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("in_flight", in_flight)
            w.field("previous_worker", previous_worker)
            w.field("reason", reason)
            w.field("worker", worker)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.worker = try f.string("worker")
        self.previous_worker = try f.optionalString("previous_worker")
        self.in_flight = try f.value("in_flight")
        self.reason = try f.string("reason")
    }
}

extension FlowRunRedriven: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("actor", actor)
            w.field("actor_type", actor_type)
            w.field("from_step", from_step)
            w.field("reset_steps", reset_steps)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.actor = try f.string("actor")
        self.from_step = try f.string("from_step")
        self.reset_steps = try f.value("reset_steps")
        self.actor_type = try f.optionalString("actor_type")
    }
}

extension FlowRunAcknowledged: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("error", error)
            w.field("text", text)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.text = try f.optionalString("text")
        self.error = try f.optionalString("error")
    }
}

extension WebhookDeliveryAttempt: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("attempt", attempt)
            w.field("error", error)
            w.field("finished_at", finished_at)
            w.field("http_status", http_status)
            w.field("idempotency_key", idempotency_key)
            w.field("output_sequence", output_sequence)
            w.field("retry_at", retry_at)
            w.field("started_at", started_at)
            w.field("url", url)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.attempt = try f.value("attempt")
        self.url = try f.string("url")
        self.idempotency_key = try f.string("idempotency_key")
        self.output_sequence = try f.value("output_sequence")
        self.started_at = try f.string("started_at")
        self.finished_at = try f.optionalString("finished_at")
        self.http_status = try f.optional("http_status")
        self.error = try f.optional("error")
        self.retry_at = try f.optionalString("retry_at")
    }
}

extension WebhookDeliveryRedriven: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("actor", actor)
            w.field("actor_type", actor_type)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.actor = try f.string("actor")
        self.actor_type = try f.optionalString("actor_type")
    }
}

extension DeliveryRecord: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("attempts", attempts)
            w.field("idempotency_key", idempotency_key)
            w.field("output_sequence", output_sequence)
            w.field("redrives", redrives)
            w.field("round_start", round_start)
            w.field("status", status)
            w.field("url", url)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.url = try f.string("url")
        self.status = try f.value("status")
        self.idempotency_key = try f.optionalString("idempotency_key")
        self.output_sequence = try f.optional("output_sequence")
        self.attempts = try f.value("attempts")
        self.redrives = try f.value("redrives")
        self.round_start = try f.value("round_start")
    }
}

extension ScheduleFiring: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("class", `class`)
            w.field("count", count)
            w.field("flow_id", flow_id)
            w.field("jitter_ms", jitter_ms)
            w.field("last_nominal_time", last_nominal_time)
            w.field("late_ms", late_ms)
            w.field("nominal_time", nominal_time)
            w.field("outcome", outcome)
            w.field("reason", reason)
            w.field("run_id", run_id)
            w.field("worker", worker)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.flow_id = try f.string("flow_id")
        self.nominal_time = try f.string("nominal_time")
        self.outcome = try f.value("outcome")
        self.`class` = try f.optionalString("class")
        self.reason = try f.optionalString("reason")
        self.run_id = try f.optionalString("run_id")
        self.late_ms = try f.optional("late_ms")
        self.jitter_ms = try f.optional("jitter_ms")
        self.count = try f.optional("count")
        self.last_nominal_time = try f.optionalString("last_nominal_time")
        self.worker = try f.optionalString("worker")
    }
}

extension ScheduleStateChanged: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("actor", actor)
            w.field("actor_type", actor_type)
            w.field("flow_id", flow_id)
            w.field("paused", paused)
            w.field("reason", reason)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.flow_id = try f.string("flow_id")
        self.paused = try f.value("paused")
        self.actor = try f.string("actor")
        self.actor_type = try f.optionalString("actor_type")
        self.reason = try f.optionalString("reason")
    }
}

extension AccessTokenChanged: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("actor", actor)
            w.field("actor_type", actor_type)
            w.field("change", change)
            w.field("role", role)
            w.field("subject", subject)
            w.field("token_id", token_id)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.token_id = try f.string("token_id")
        self.subject = try f.string("subject")
        self.role = try f.string("role")
        self.change = try f.string("change")
        self.actor = try f.string("actor")
        self.actor_type = try f.optionalString("actor_type")
    }
}

extension ManualSignal: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("flow_id", flow_id)
            w.field("metadata", metadata)
            w.field("payload", payload)
            w.field("signal_id", signal_id)
            w.field("signal_type", signal_type)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.signal_id = try f.string("signal_id")
        self.signal_type = try f.string("signal_type")
        self.flow_id = try f.string("flow_id")
        self.payload = try f.json("payload")
        self.metadata = try f.value("metadata")
    }
}

extension ManualSignal.Metadata: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("executed_at", executed_at)
            w.field("mode", mode)
            w.field("on_behalf_of", on_behalf_of)
            w.field("source", source)
            w.field("trace_id", trace_id)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.source = try f.value("source")
        self.trace_id = try f.string("trace_id")
        self.executed_at = try f.string("executed_at")
        self.mode = try f.string("mode")
        self.on_behalf_of = try f.optionalString("on_behalf_of")
    }
}

extension ManualSignal.Source: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("actor", actor)
            w.field("type", type)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.type = try f.string("type")
        self.actor = try f.value("actor")
    }
}

extension ActorRef: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("id", id)
            w.field("type", type)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.type = try f.string("type")
        self.id = try f.string("id")
    }
}

extension InboundMessageRejected: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("payload", payload)
            w.field("payload_encoding", payload_encoding)
            w.field("reason", reason)
            w.field("sequence", sequence)
            w.field("subject", subject)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.subject = try f.string("subject")
        self.sequence = try f.optional("sequence")
        self.reason = try f.string("reason")
        self.payload = try f.string("payload")
        self.payload_encoding = try f.string("payload_encoding")
    }
}

extension InboundEventUnhandled: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("event_id", event_id)
            w.field("reason", reason)
            w.field("sequence", sequence)
            w.field("source", source)
            w.field("type", type)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.event_id = try f.string("event_id")
        self.type = try f.string("type")
        self.source = try f.string("source")
        self.sequence = try f.optional("sequence")
        self.reason = try f.string("reason")
    }
}

extension FlowOutputProduced: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("channel", channel)
            w.field("data", data)
            w.field("flow_id", flow_id)
            w.field("flow_version", flow_version)
            w.field("kind", kind)
            w.field("message_id", message_id)
            w.field("run_id", run_id)
            w.field("text", text)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.run_id = try f.string("run_id")
        self.flow_id = try f.string("flow_id")
        self.flow_version = try f.value("flow_version")
        self.message_id = try f.optionalString("message_id")
        self.channel = try f.optional("channel")
        self.text = try f.optionalString("text")
        self.data = try f.optional("data")
        self.kind = try f.optional("kind")
    }
}

extension FlowVersionRecorded: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("actor", actor)
            w.field("actor_type", actor_type)
            w.field("based_on", based_on)
            w.field("definition", definition)
            w.field("definition_hash", definition_hash)
            w.field("flow_id", flow_id)
            w.field("summary", summary)
            w.field("version", version)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.flow_id = try f.string("flow_id")
        self.version = try f.value("version")
        self.definition = try f.json("definition")
        self.definition_hash = try f.string("definition_hash")
        self.actor = try f.string("actor")
        self.based_on = try f.optional("based_on")
        self.summary = try f.optionalString("summary")
        self.actor_type = try f.optionalString("actor_type")
    }
}

extension FlowStatusChanged: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("actor", actor)
            w.field("actor_type", actor_type)
            w.field("flow_id", flow_id)
            w.field("reason", reason)
            w.field("status", status)
            w.field("version", version)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.flow_id = try f.string("flow_id")
        self.version = try f.value("version")
        self.actor = try f.string("actor")
        self.status = try f.value("status")
        self.actor_type = try f.optionalString("actor_type")
        self.reason = try f.optionalString("reason")
    }
}

extension AttemptRecord: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("attempt", attempt)
            w.field("error", error)
            w.field("finished_at", finished_at)
            w.field("http_status", http_status)
            w.field("retry_at", retry_at)
            w.field("started_at", started_at)
            w.field("status", status)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.attempt = try f.value("attempt")
        self.started_at = try f.string("started_at")
        self.finished_at = try f.optionalString("finished_at")
        self.status = try f.value("status")
        self.error = try f.optional("error")
        self.retry_at = try f.optionalString("retry_at")
        self.http_status = try f.optional("http_status")
    }
}

extension CompensationRecord: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("attempts", attempts)
            w.field("output", output)
            w.field("status", status)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.status = try f.value("status")
        self.attempts = try f.value("attempts")
        self.output = try f.optional("output")
    }
}

extension StepRecord: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("attempts", attempts)
            w.field("command_id", command_id)
            w.field("compensation", compensation)
            w.field("generation", generation)
            w.field("idempotency_key", idempotency_key)
            w.field("late_results", late_results)
            w.field("output", output)
            w.field("skipped_reason", skipped_reason)
            w.field("status", status)
            w.field("step_id", step_id)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.step_id = try f.string("step_id")
        self.status = try f.value("status")
        self.attempts = try f.value("attempts")
        self.output = try f.optional("output")
        self.idempotency_key = try f.optionalString("idempotency_key")
        self.command_id = try f.optionalString("command_id")
        self.skipped_reason = try f.optionalString("skipped_reason")
        self.compensation = try f.optional("compensation")
        self.generation = try f.value("generation")
        self.late_results = try f.optional("late_results")
    }
}

extension LateResult: JSONWritable, JSONReadable {
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("attempt", attempt)
            w.field("compensable", compensable)
            w.field("output", output)
            w.field("received_at", received_at)
            w.field("source_sequence", source_sequence)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        self.attempt = try f.value("attempt")
        self.received_at = try f.string("received_at")
        self.output = try f.json("output")
        self.source_sequence = try f.optional("source_sequence")
        self.compensable = try f.value("compensable")
    }
}

extension RunState: JSONWritable, JSONReadable {
    /// The stored form: the phase as `status`, `phase` ("compensating" or absent) and `cancel_requested_by`, as the
    /// `Codable` form always wrote it.
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("ack", ack)
            w.field("actor", actor)
            w.field("actor_type", actor_type)
            w.field("cancel_requested_by", cancel_requested_by)
            w.field("channel", channel)
            w.field("completion_order", completion_order)
            w.field("created_at", created_at)
            w.field("dedup_key", dedup_key)
            w.field("definition_hash", definition_hash)
            w.field("delivery", delivery)
            w.field("error", error)
            w.field("finished_at", finished_at)
            w.field("flow_id", flow_id)
            w.field("flow_version", flow_version)
            w.field("input", input)
            w.field("last_sequence", last_sequence)
            w.field("message_id", message_id)
            w.field("mode", mode)
            w.field("on_behalf_of", on_behalf_of)
            w.field("output", output)
            w.field("output_sequence", output_sequence)
            switch phase {
            case .compensating, .cancelling: w.field("phase", Self.compensatingPhase)
            case .running, .succeeded, .failed, .cancelled: break
            }
            w.field("redrives", redrives)
            w.field("run_id", run_id)
            w.field("started_at", started_at)
            w.field("status", status)
            w.field("steps", steps)
            w.field("traceparent", traceparent)
            w.field("trigger", trigger)
            w.field("updated_at", updated_at)
            w.field("worker", worker)
        }
    }

    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        run_id = try f.string("run_id")
        flow_id = try f.string("flow_id")
        flow_version = try f.value("flow_version")
        definition_hash = try f.string("definition_hash")
        phase = Self.phase(
            status: try f.value("status"), stored: try f.optionalString("phase"),
            cancelledBy: try f.optionalString("cancel_requested_by"))
        mode = try f.value("mode")
        trigger = try f.value("trigger")
        actor = try f.string("actor")
        input = try f.json("input")
        dedup_key = try f.optionalString("dedup_key")
        message_id = try f.optionalString("message_id")
        channel = try f.optional("channel")
        created_at = try f.string("created_at")
        started_at = try f.optionalString("started_at")
        updated_at = try f.string("updated_at")
        finished_at = try f.optionalString("finished_at")
        steps = try f.value("steps")
        output = try f.optional("output")
        error = try f.optional("error")
        completion_order = try f.value("completion_order")
        redrives = try f.value("redrives")
        last_sequence = try f.value("last_sequence")
        output_sequence = try f.optional("output_sequence")
        worker = try f.optionalString("worker")
        actor_type = try f.optionalString("actor_type")
        on_behalf_of = try f.optionalString("on_behalf_of")
        traceparent = try f.optionalString("traceparent")
        ack = try f.optional("ack")
        delivery = try f.optional("delivery")
    }
}

extension CloudEvent: JSONWritable where Payload: JSONWritable {
    /// The envelope with its attributes in sorted order and `data` written in place.
    public func write(to writer: inout JSONWriter) {
        writer.object { w in
            w.field("causationid", causationid)
            w.field("correlationid", correlationid)
            w.field("data", data)
            w.field("datacontenttype", datacontenttype)
            w.field("flowid", flowid)
            w.field("flowversion", flowversion)
            w.field("id", id)
            w.field("prevhash", prevhash)
            w.field("runid", runid)
            w.field("schemaversion", schemaversion)
            w.field("source", source)
            w.field("specversion", specversion)
            w.field("stepid", stepid)
            w.field("subject", subject)
            w.field("time", time)
            w.field("traceparent", traceparent)
            w.field("type", type)
        }
    }
}

extension CloudEvent: JSONReadable where Payload: JSONReadable {
    public init(json: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(json)
        specversion = try f.string("specversion")
        id = try f.string("id")
        source = try f.string("source")
        type = try f.string("type")
        time = try f.optionalString("time")
        datacontenttype = try f.optionalString("datacontenttype")
        subject = try f.optionalString("subject")
        runid = try f.optionalString("runid")
        flowid = try f.optionalString("flowid")
        flowversion = try f.optional("flowversion")
        stepid = try f.optionalString("stepid")
        correlationid = try f.optionalString("correlationid")
        causationid = try f.optionalString("causationid")
        traceparent = try f.optionalString("traceparent")
        schemaversion = try f.optional("schemaversion")
        prevhash = try f.optionalString("prevhash")
        data = try f.present("data")
    }
}

extension LedgerEvent {
    /// Reads an event of the log by hand (the bytes parsed once, the body read straight from the tree): `data` of
    /// an older `schemaversion` is upcast to the current shape first; a newer one throws `EventSchemaError`.
    public init(bytes: some Collection<UInt8>, schema: EventSchema = .ledger) throws {
        try self.init(json: try JSONTree.parse(bytes), schema: schema)
    }

    public init(json: JSONValue, schema: EventSchema = .ledger) throws {
        EventCoding.countDecoded()
        let f = try JSONFields(json)
        let type = try f.string("type")
        let version = try f.optional("schemaversion") ?? EventSchema.initialVersion
        var data = f.object["data"] ?? .null
        if version != schema.currentVersion(of: type) { data = try schema.upcast(data, type: type, from: version) }
        self.init(
            id: try f.string("id"), type: type, time: try f.optionalString("time") ?? "",
            runid: try f.optionalString("runid"), flowid: try f.optionalString("flowid"),
            body: try Self.body(type: type, data: data))
    }

    static func body(type: String, data: JSONValue) throws(JSONShapeError) -> Body {
        do throws(JSONShapeError) {
            switch type {
            case EventType.flowRegistered, EventType.flowVersionCreated:
                return .flowVersionRecorded(try .init(json: data))
            case EventType.flowActivated, EventType.flowDeactivated, EventType.flowMarkedBroken:
                return .flowStatusChanged(try .init(json: data))
            case EventType.runStarted: return .runStarted(try .init(json: data))
            case EventType.stepAttemptStarted: return .stepAttemptStarted(try .init(json: data))
            case EventType.stepAttemptSucceeded: return .stepAttemptSucceeded(try .init(json: data))
            case EventType.stepAttemptFailed: return .stepAttemptFailed(try .init(json: data))
            case EventType.stepSkipped: return .stepSkipped(try .init(json: data))
            case EventType.stepLateResultRecorded: return .stepLateResultRecorded(try .init(json: data))
            case EventType.runSucceeded: return .runSucceeded(try .init(json: data))
            case EventType.runFailed: return .runFailed(try .init(json: data))
            case EventType.messageRejected: return .rejected(try .init(json: data))
            case EventType.eventUnhandled: return .unhandled(try .init(json: data))
            case EventType.runCompensating: return .runCompensating(try .init(json: data))
            case EventType.compensationStarted: return .compensationStarted(try .init(json: data))
            case EventType.compensationSucceeded: return .compensationSucceeded(try .init(json: data))
            case EventType.compensationFailed: return .compensationFailed(try .init(json: data))
            case EventType.runCancelRequested: return .runCancelRequested(try .init(json: data))
            case EventType.runCancelled: return .runCancelled(try .init(json: data))
            case EventType.runRedriven: return .runRedriven(try .init(json: data))
            case EventType.runClaimed: return .runClaimed(try .init(json: data))
            case EventType.tokenCreated, EventType.tokenRevoked: return .tokenChanged(try .init(json: data))
            case EventType.manualSignalIssued: return .signalIssued(try .init(json: data))
            case EventType.scheduleFiringStarted, EventType.scheduleFiringSkipped, EventType.scheduleFiringBuffered:
                return .scheduleFiring(try .init(json: data))
            case EventType.schedulePaused, EventType.scheduleResumed:
                return .scheduleStateChanged(try .init(json: data))
            case EventType.runAcknowledged: return .runAcknowledged(try .init(json: data))
            case EventType.deliveryStarted: return .deliveryStarted(try .init(json: data))
            case EventType.deliverySucceeded: return .deliverySucceeded(try .init(json: data))
            case EventType.deliveryFailed: return .deliveryFailed(try .init(json: data))
            case EventType.deliveryRedriven: return .deliveryRedriven(try .init(json: data))
            default: return .other
            }
        } catch {
            throw error.inside("data")
        }
    }
}

extension LedgerEvent.Body {
    /// Writes the body as a CloudEvent (written once, here, for the append).
    public func eventBytes(
        id: String, source: String = LedgerSource.engine, time: String, runid: String?, flowid: String?,
        flowversion: Int?, correlationid: String? = nil, causationid: String? = nil, traceparent: String? = nil,
        prevhash: String? = nil
    ) -> [UInt8] {
        EventCoding.countEncoded()
        func event<P: JSONWritable & Codable & Sendable>(_ data: P) -> [UInt8] {
            CloudEvent(
                id: id, source: source, type: type, time: time, runid: runid, flowid: flowid, flowversion: flowversion,
                stepid: stepID,
                correlationid: correlationid, causationid: causationid, traceparent: traceparent, prevhash: prevhash,
                data: data
            ).jsonBytes(reserving: 2048)
        }
        switch self {
        case .flowVersionRecorded(let e): return event(e)
        case .flowStatusChanged(let e): return event(e)
        case .runStarted(let e): return event(e)
        case .stepAttemptStarted(let e), .compensationStarted(let e): return event(e)
        case .stepAttemptSucceeded(let e), .compensationSucceeded(let e): return event(e)
        case .stepAttemptFailed(let e), .compensationFailed(let e): return event(e)
        case .stepSkipped(let e): return event(e)
        case .stepLateResultRecorded(let e): return event(e)
        case .runSucceeded(let e): return event(e)
        case .runFailed(let e): return event(e)
        case .rejected(let e): return event(e)
        case .unhandled(let e): return event(e)
        case .runCompensating(let e): return event(e)
        case .runCancelRequested(let e): return event(e)
        case .runCancelled(let e): return event(e)
        case .runRedriven(let e): return event(e)
        case .runClaimed(let e): return event(e)
        case .tokenChanged(let e): return event(e)
        case .signalIssued(let e): return event(e)
        case .scheduleFiring(let e): return event(e)
        case .scheduleStateChanged(let e): return event(e)
        case .runAcknowledged(let e): return event(e)
        case .deliveryStarted(let e), .deliverySucceeded(let e), .deliveryFailed(let e): return event(e)
        case .deliveryRedriven(let e): return event(e)
        case .outputPublished, .other: return event(JSONValue.null)
        }
    }
}
