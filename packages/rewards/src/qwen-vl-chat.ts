/**
 * The prompt an OpenAI-compatible server builds from a chat request: the model's own chat template (Jinja)
 * rendered over the messages with the generation prompt, as vLLM and transformers' `apply_chat_template` do.
 * For templates that loop over the content parts (Qwen2-VL's), each image becomes `{type: "image"}` and each
 * text `{type: "text", text}` in request order — vLLM's "openai" content format — so the template writes its
 * `<|vision_start|><|image_pad|><|vision_end|>` block per image and copies the text.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import type { ChatMessage } from "./chat-types.js";
import { JudgeConfigError } from "./errors.js";

/** A parsed chat template, ready to render. */
export interface ChatTemplate {
  /** Where it came from (a file name), for messages. */
  source: string;
  text: string;
  render(messages: readonly ChatMessage[]): string;
}

/** Parses a Jinja chat template; a syntax error names its source. */
export function parseChatTemplate(text: string, source = "chat template"): ChatTemplate {
  let template: Template;
  try {
    template = new Template(text);
  } catch (err) {
    throw new JudgeConfigError(`${source}: the chat template does not parse: ${(err as Error).message}`);
  }
  return {
    source,
    text,
    render(messages) {
      const parts = messages.map((m) => ({
        role: m.role,
        content:
          typeof m.content === "string"
            ? m.content
            : m.content.map((p) =>
                p.type === "image_url" ? { type: "image" } : { type: "text", text: p.text },
              ),
      }));
      try {
        return template.render({ messages: parts, add_generation_prompt: true });
      } catch (err) {
        throw new JudgeConfigError(
          `${source}: rendering the chat template failed: ${(err as Error).message}`,
        );
      }
    },
  };
}

async function readText(path: string): Promise<string | undefined> {
  return readFile(path, "utf8").catch(() => undefined);
}

function parseJson(text: string, path: string): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new JudgeConfigError(`${path} is not valid JSON (${(err as Error).message}); re-download it`);
  }
}

/**
 * The chat template of a model folder, looked up where transformers looks: `chat_template.jinja`, then
 * `chat_template.json` (the processor's, what Qwen2.5-VL ships), then `tokenizer_config.json`'s
 * `chat_template` (a string, or a list of named templates of which "default" is used).
 */
export async function loadChatTemplate(dir: string): Promise<ChatTemplate> {
  const jinja = join(dir, "chat_template.jinja");
  const direct = await readText(jinja);
  if (direct !== undefined) return parseChatTemplate(direct, jinja);
  for (const file of ["chat_template.json", "tokenizer_config.json"]) {
    const path = join(dir, file);
    const text = await readText(path);
    if (text === undefined) continue;
    const value = parseJson(text, path).chat_template;
    if (typeof value === "string") return parseChatTemplate(value, path);
    if (Array.isArray(value)) {
      const named = value.find((t) => (t as { name?: unknown })?.name === "default") as
        | { template?: unknown }
        | undefined;
      if (typeof named?.template === "string") return parseChatTemplate(named.template, path);
    }
  }
  throw new JudgeConfigError(
    `${dir} has no chat template (chat_template.jinja, chat_template.json or tokenizer_config.json's ` +
      "chat_template); the judge prompt is rendered with the model's own template, so download it with the model",
  );
}
