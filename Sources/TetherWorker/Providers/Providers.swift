import NIOCore
import TetherCore

/// Makes the model provider of each configured agent.
public enum Providers {
    /// One provider per agent, by agent id. The demo agents share one pacer (one timer per event loop).
    public static func make(for config: TetherConfig) -> [String: any ModelProvider] {
        let pacer = Pacer(delay: .milliseconds(Int64(config.demo.tokenDelayMilliseconds)))
        var providers: [String: any ModelProvider] = [:]
        for agent in config.agents {
            switch agent.model.provider {
            case .demo: providers[agent.id] = DemoProvider(pacer: pacer)
            case .openai, .anthropic: break
            }
        }
        return providers
    }
}
