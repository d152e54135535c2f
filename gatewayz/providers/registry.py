"""Built-in providers as data. A provider is enabled when its key is in the environment (or it is listed
in the config); `catalog` names its models in the bundled price data. `makers` are the model families
a provider is first-party for: those models fail over only to their maker and to aggregators, while
open-weight models fail over across every provider that hosts them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["maker", "aggregator", "host", "local"]


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str
    env_key: str
    base_url: str
    role: Role
    makers: tuple[str, ...] = ()
    catalog: str | None = None          # litellm_provider in ../shared/data/model_prices.json
    base_url_env: str | None = None     # an environment variable that overrides base_url
    model_prefix: str = ""              # prepended to model ids upstream (Fireworks' accounts/... ids)
    wire: str = "openai"
    # Adapter options read from the environment: (option name, variable), e.g. ("region", "AWS_REGION").
    option_env: tuple[tuple[str, str], ...] = ()


BUILTIN: tuple[ProviderInfo, ...] = (
    ProviderInfo("openai", "OPENAI_API_KEY", "https://api.openai.com/v1", "maker", ("openai",), "openai"),
    ProviderInfo("azure", "AZURE_OPENAI_API_KEY", "https://example-resource.openai.azure.com", "host", (), None,
                 base_url_env="AZURE_OPENAI_ENDPOINT", wire="azure",
                 option_env=(("api_version", "AZURE_OPENAI_API_VERSION"),)),
    ProviderInfo("anthropic", "ANTHROPIC_API_KEY", "https://api.anthropic.com/v1", "maker", ("anthropic",), "anthropic",
                 wire="anthropic"),
    # Google's models: Vertex AI first when its project is set (GOOGLE_APPLICATION_CREDENTIALS names the
    # credentials file), then the Gemini API (AI Studio).
    ProviderInfo("vertex", "VERTEXAI_PROJECT", "https://{location}-aiplatform.googleapis.com/v1", "maker",
                 ("google",), "vertex_ai-language-models", wire="vertex",
                 option_env=(("project", "VERTEXAI_PROJECT"), ("location", "VERTEXAI_LOCATION"),
                             ("credentials_file", "GOOGLE_APPLICATION_CREDENTIALS"))),
    ProviderInfo("gemini", "GEMINI_API_KEY", "https://generativelanguage.googleapis.com/v1beta", "maker",
                 ("google",), "gemini", wire="gemini"),
    ProviderInfo("cohere", "COHERE_API_KEY", "https://api.cohere.com/v2", "maker", ("cohere",), "cohere_chat",
                 wire="cohere"),
    ProviderInfo("openrouter", "OPENROUTER_API_KEY", "https://openrouter.ai/api/v1", "aggregator"),
    ProviderInfo("vercel", "AI_GATEWAY_API_KEY", "https://ai-gateway.vercel.sh/v1", "aggregator", (),
                 "vercel_ai_gateway"),
    ProviderInfo("groq", "GROQ_API_KEY", "https://api.groq.com/openai/v1", "host", (), "groq"),
    ProviderInfo("together", "TOGETHER_API_KEY", "https://api.together.xyz/v1", "host", (), "together_ai"),
    ProviderInfo("fireworks", "FIREWORKS_API_KEY", "https://api.fireworks.ai/inference/v1", "host", (),
                 "fireworks_ai", model_prefix="accounts/fireworks/models/"),
    ProviderInfo("deepinfra", "DEEPINFRA_API_KEY", "https://api.deepinfra.com/v1/openai", "host", (), "deepinfra"),
    ProviderInfo("cerebras", "CEREBRAS_API_KEY", "https://api.cerebras.ai/v1", "host", (), "cerebras"),
    ProviderInfo("xai", "XAI_API_KEY", "https://api.x.ai/v1", "maker", ("x-ai",), "xai"),
    ProviderInfo("mistral", "MISTRAL_API_KEY", "https://api.mistral.ai/v1", "maker", ("mistralai",), "mistral"),
    ProviderInfo("deepseek", "DEEPSEEK_API_KEY", "https://api.deepseek.com/v1", "maker", ("deepseek",), "deepseek"),
    ProviderInfo("perplexity", "PERPLEXITY_API_KEY", "https://api.perplexity.ai", "maker", ("perplexity",),
                 "perplexity"),
    ProviderInfo("novita", "NOVITA_API_KEY", "https://api.novita.ai/v3/openai", "host", (), "novita"),
    ProviderInfo("nebius", "NEBIUS_API_KEY", "https://api.studio.nebius.com/v1", "host", (), "nebius"),
    ProviderInfo("huggingface", "HF_TOKEN", "https://router.huggingface.co/v1", "host"),
    ProviderInfo("cloudflare", "CLOUDFLARE_API_TOKEN", "https://api.cloudflare.com/client/v4/accounts/"
                 "${CLOUDFLARE_ACCOUNT_ID}/ai/v1", "host", (), "cloudflare"),
    ProviderInfo("dashscope", "DASHSCOPE_API_KEY", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "maker",
                 ("qwen",), "dashscope"),
    ProviderInfo("featherless", "FEATHERLESS_API_KEY", "https://api.featherless.ai/v1", "host", (), "featherless_ai"),
    ProviderInfo("sambanova", "SAMBANOVA_API_KEY", "https://api.sambanova.ai/v1", "host", (), "sambanova"),
    ProviderInfo("hyperbolic", "HYPERBOLIC_API_KEY", "https://api.hyperbolic.xyz/v1", "host", (), "hyperbolic"),
    ProviderInfo("moonshot", "MOONSHOT_API_KEY", "https://api.moonshot.ai/v1", "maker", ("moonshotai",), "moonshot"),
    # Bedrock: AWS_ACCESS_KEY_ID enables it (SigV4 with the secret and optional session token); a Bedrock
    # API key (AWS_BEARER_TOKEN_BEDROCK) is used instead when set. The catalog is LiteLLM's Converse list.
    ProviderInfo("bedrock", "AWS_ACCESS_KEY_ID", "https://bedrock-runtime.{region}.amazonaws.com", "host", (),
                 "bedrock_converse", wire="bedrock",
                 option_env=(("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                             ("session_token", "AWS_SESSION_TOKEN"), ("region", "AWS_DEFAULT_REGION"),
                             ("region", "AWS_REGION"), ("bearer_token", "AWS_BEARER_TOKEN_BEDROCK"))),
    ProviderInfo("ollama", "OLLAMA_API_KEY", "http://127.0.0.1:11434/v1", "local", base_url_env="OLLAMA_BASE_URL"),
    ProviderInfo("vllm", "VLLM_API_KEY", "http://127.0.0.1:8000/v1", "local", base_url_env="VLLM_BASE_URL"),
    ProviderInfo("lmstudio", "LMSTUDIO_API_KEY", "http://127.0.0.1:1234/v1", "local", base_url_env="LMSTUDIO_BASE_URL"),
    ProviderInfo("llamacpp", "LLAMACPP_API_KEY", "http://127.0.0.1:8080/v1", "local",
                 base_url_env="LLAMACPP_BASE_URL"),
)

BY_NAME = {p.name: p for p in BUILTIN}


def env_names() -> list[str]:
    """Every environment variable the registry reads (settings.py reads them, nothing else does)."""
    names = [p.env_key for p in BUILTIN] + [p.base_url_env for p in BUILTIN if p.base_url_env]
    names += [var for p in BUILTIN for _, var in p.option_env]
    return list(dict.fromkeys([*names, "CLOUDFLARE_ACCOUNT_ID"]))
