"""Agent-framework adapters: the session store behind other frameworks' memory APIs.

Each adapter lives in a module of its own and imports its framework, which
is an optional extra; this package imports neither:

- `aisopod_session.adapters.openai_agents.AisopodSession`: the OpenAI Agents
  SDK's `Session` protocol (`pip install 'aisopod-session[openai-agents]'`).
- `aisopod_session.adapters.langchain.AisopodChatMessageHistory`: LangChain's
  `BaseChatMessageHistory` (`pip install 'aisopod-session[langchain]'`).
- `aisopod_session.adapters.adk.AisopodSessionService`: Google ADK's
  `BaseSessionService` (`pip install 'aisopod-session[adk]'`).
- `aisopod_session.adapters.pydantic_ai.AisopodMessageHistory`: a Pydantic AI
  agent's `message_history`, by conversation id
  (`pip install 'aisopod-session[pydantic-ai]'`).

Each stores what its framework hands it losslessly (it comes back equal, key
for key) inside native message entries, so the store's context, compaction,
search and tool-call pairing understand a conversation whichever framework
wrote it; and each reads the native messages others wrote (user, assistant
and system text, tool calls and their results) as its own kind, so a
conversation started on one framework continues on another.

A framework's session id maps to a session key by `conversation_key`
(plain ids keep their case; `conversation_id` gives the id back). After a
compaction, both read what the model should see: the summary, then what it
kept. `CompactionPolicy` makes an adapter compact by itself after adding.
"""

from aisopod_session.adapters._common import CompactionPolicy, conversation_id, conversation_key

__all__ = ["CompactionPolicy", "conversation_id", "conversation_key"]
