import Foundation
import NIOCore
import TetherCore

/// Makes the model provider of each configured agent.
public enum Providers {
    /// One provider per agent, by agent id. API keys are read from the environment variables the agents name
    /// (the configuration check made sure they are set). The demo agents share one pacer (one timer per loop).
    public static func make(
        for config: TetherConfig, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> [String: any ModelProvider] {
        let pacer = Pacer(delay: .milliseconds(Int64(config.demo.tokenDelayMilliseconds)))
        var providers: [String: any ModelProvider] = [:]
        for agent in config.agents {
            let key = agent.model.apiKeyEnvironment.flatMap { environment[$0] }.flatMap { $0.isEmpty ? nil : $0 }
            switch agent.model.provider {
            case .demo: providers[agent.id] = DemoProvider(pacer: pacer)
            case .openai: providers[agent.id] = OpenAIProvider(model: agent.model, apiKey: key)
            case .anthropic: providers[agent.id] = AnthropicProvider(model: agent.model, apiKey: key ?? "")
            }
        }
        return providers
    }
}
