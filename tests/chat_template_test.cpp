// Chat templates against transformers' apply_chat_template (tests/reference/chat_templates.py): the published
// templates of Llama 2 / 3 / 3.1 / 3.2, Qwen2 / 2.5 / 3, Mistral v0.1-v0.3, Zephyr, Gemma and Phi-3 plus synthetic
// ones for the Jinja features they use, rendered byte for byte; and AutoTrain's chat dataset pipeline (JSONL
// lists and CSV cells holding Python's str() of the list), token ids and all.
#include <gtest/gtest.h>

#include <fstream>

#include "autotrain/chat_template.h"
#include "autotrain/config.h"
#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/finetune.h"
#include "autotrain/token_cache.h"
#include "autotrain/tokenizer.h"
#include "test_util.h"

namespace autotrain {
namespace {

const std::string kReference = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/chat_templates";

OrderedJson read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("missing " + path + " (run tools/make_fixtures.py)");
  return OrderedJson::parse(in);
}

TEST(ChatTemplate, RendersAsTransformersDoes) {
  const OrderedJson cases = read_json(kReference + "/renders.json")["cases"];
  ASSERT_GT(cases.size(), 100u);
  int rendered = 0, refused = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    OrderedJson context = {{"messages", c["messages"]}, {"add_generation_prompt", c["add_generation_prompt"]},
                           {"tools", nullptr}, {"documents", nullptr}};
    for (const char* token : {"bos_token", "eos_token"})
      if (!c[token].is_null()) context[token] = c[token];
    if (c.contains("extra")) context.update(c["extra"]);
    std::string out, error;
    try {
      out = JinjaTemplate(c["template"].get<std::string>(), c["name"].get<std::string>()).render(context);
    } catch (const Error& e) {
      error = e.what();
    }
    if (c.contains("rendered")) {
      EXPECT_EQ(error, "");
      EXPECT_EQ(out, c["rendered"].get<std::string>());  // exact: the text is what gets tokenized
      ++rendered;
    } else {
      EXPECT_NE(error.find(c["error"].get<std::string>()), std::string::npos) << error;
      ++refused;
    }
  }
  EXPECT_GT(rendered, 80);
  EXPECT_GT(refused, 10);
}

// apply() with more variables (apply_chat_template's keyword arguments): Qwen3's enable_thinking=False prefills an
// empty think block, as the oracle rendered it; the names apply() sets itself are refused.
TEST(ChatTemplate, ApplyTakesTemplateVariablesAsApplyChatTemplatesKeywordArguments) {
  const OrderedJson cases = read_json(kReference + "/renders.json")["cases"];
  const OrderedJson* wanted = nullptr;
  for (const auto& c : cases)
    if (c["name"] == "qwen3/enable_thinking_false+generation_prompt") wanted = &c;
  ASSERT_NE(wanted, nullptr);
  ASSERT_EQ((*wanted)["extra"], OrderedJson({{"enable_thinking", false}}));
  const ChatTemplate chat((*wanted)["template"].get<std::string>(), "qwen3", {{"eos_token", "<|im_end|>"}});
  const std::string rendered = chat.apply((*wanted)["messages"], true, (*wanted)["extra"]);
  EXPECT_EQ(rendered, (*wanted)["rendered"].get<std::string>());
  EXPECT_NE(rendered, chat.apply((*wanted)["messages"], true));  // without it Qwen3 leaves the think block open
  const std::string refused = testing::error_message_of(
      [&] { chat.apply((*wanted)["messages"], true, {{"add_generation_prompt", false}}); });
  EXPECT_NE(refused.find("\"add_generation_prompt\" is set by autotrain itself"), std::string::npos) << refused;
}

// AutoTrain's default trainer with chat_template "tokenizer" (and its sft trainer), from the dataset file to the
// token cache: JSONL lists and CSV cells holding Python's str() of the list give transformers' texts and ids.
TEST(ChatTemplate, DatasetConversationsBecomeTransformersIds) {
  const std::string pipeline = kReference + "/pipeline";
  const OrderedJson expected = read_json(pipeline + "/expected.json");
  for (const std::string model : {"qwen2", "llama"}) {
    const std::string folder = pipeline + "/tokenizer_" + model;
    const ChatTemplate chat = ChatTemplate::load(folder);
    EXPECT_FALSE(chat.is_fallback());
    auto tokenizer = Tokenizer::load(folder);
    for (const std::string file : {"chat.jsonl", "chat.csv", "chat.parquet"}) {
      SCOPED_TRACE(model + " " + file);
      std::vector<std::string> texts;
      for_each_text({pipeline + "/" + file}, "messages", [&](const std::string& t) { texts.push_back(t); }, &chat);
      EXPECT_EQ(OrderedJson(texts), expected[model]["texts"]);
      for (const std::string trainer : {"default", "sft"}) {
        testing::TempDir cache;
        TrainingParams params;
        params.model = folder;
        params.data_path = pipeline + "/" + file;
        params.text_column = "messages";
        params.chat_template = "tokenizer";
        params.trainer = trainer;
        const TokenizedText tokens = tokenize_split(params, *tokenizer, "train", cache.path().string());
        std::vector<int64_t> want;
        for (const auto& ids : expected[model][trainer == "sft" ? "sft_ids" : "ids"])
          for (const auto& id : ids) want.push_back(id.get<int64_t>());
        ASSERT_EQ(tokens.size(), static_cast<int64_t>(want.size())) << trainer;
        for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(tokens.ids()[i], want[i]) << trainer << " token " << i;
      }
    }
  }
}

TEST(ChatTemplate, ATokenizerWithoutATemplateGetsAutoTrainsChatML) {
  testing::TempDir dir;
  const ChatTemplate chat = ChatTemplate::load(dir.path().string());
  EXPECT_TRUE(chat.is_fallback());
  const OrderedJson messages = OrderedJson::parse(
      R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "tool_calls": null}])");
  // AutoTrain's DEFAULT_CHAT_TEMPLATE (trainers/clm/utils.py) for these messages, written out by hand.
  const std::string text = chat.apply(messages);
  EXPECT_EQ(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n");
  EXPECT_EQ(chat.apply(messages, true), text + "<|im_start|>assistant\n");
}

TEST(ChatTemplate, TemplateFilesAreFoundWhereTransformersLooks) {
  testing::TempDir dir;
  const OrderedJson messages = OrderedJson::parse(R"([{"role": "user", "content": "a"}])");
  testing::write_text(dir.file("chat_template.jinja"), "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}\n");
  testing::write_text(dir.file("tokenizer_config.json"), R"({"bos_token": {"content": "<s>", "special": true}})");
  EXPECT_EQ(ChatTemplate::load(dir.path().string()).apply(messages), "<s>[a]");  // its last newline dropped
  testing::write_text(dir.file("tokenizer_config.json"),
                      R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  EXPECT_EQ(ChatTemplate::load(dir.path().string()).apply(messages), "D");
  testing::write_text(dir.file("tokenizer_config.json"), R"({"chat_template": [{"name": "tool_use", "template": "T"}]})");
  EXPECT_NE(testing::error_message_of([&] { ChatTemplate::load(dir.path().string()); }).find("\"default\""),
            std::string::npos);
}

TEST(ChatTemplate, PythonLiteralsReadAsAstLiteralEvalReadsThem) {
  EXPECT_EQ(parse_python_literal(R"([{'role': 'user', 'content': "it's \"x\"\n\t\\ \u00e9\x41"}, (1, -2.5e3, None, True)])"),
            OrderedJson::parse(R"([{"role": "user", "content": "it's \"x\"\n\t\\ \u00e9A"}, [1, -2500.0, null, true]])"));
  EXPECT_EQ(parse_python_literal(R"('a' "b")"), "ab");
  EXPECT_EQ(parse_python_literal(R"(r'\n')"), "\\n");
  EXPECT_EQ(parse_python_literal(R"('''x'y''')"), "x'y");
  EXPECT_EQ(parse_python_literal(R"({"b": 1, "a": 2})").begin().key(), "b");  // order kept, as Python dicts keep it
  for (const char* bad : {"[1, 2", "{'a' 1}", "'open", "[x]", "{1: 2}", "1 2"})
    EXPECT_NE(testing::error_message_of([&] { parse_python_literal(bad); }).find("not a Python literal"),
              std::string::npos)
        << bad;
}

TEST(ChatTemplate, BadConversationsNameTheRecord) {
  testing::TempDir dir;
  const ChatTemplate chat = ChatTemplate::load(dir.path().string());
  auto error_for = [&](const std::string& line) {
    testing::write_text(dir.file("train.jsonl"), R"({"messages": [{"role": "user", "content": "ok"}]})" "\n" + line);
    return testing::error_message_of(
        [&] { for_each_text({dir.file("train.jsonl")}, "messages", [](const std::string&) {}, &chat); });
  };
  EXPECT_NE(error_for(R"({"messages": "not a list"})").find("train.jsonl:2: column \"messages\""), std::string::npos);
  EXPECT_NE(error_for(R"({"messages": [{"content": "no role"}]})").find("train.jsonl:2: "), std::string::npos);
  EXPECT_NE(error_for(R"({"messages": 3})").find("train.jsonl:2: "), std::string::npos);
  // Without chat_template, a list in the text column says what to set.
  testing::write_text(dir.file("plain.jsonl"), R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_NE(testing::error_message_of([&] { for_each_text({dir.file("plain.jsonl")}, "messages", [](const std::string&) {}); })
                .find("\"chat_template\": \"tokenizer\""),
            std::string::npos);
  // A template's raise_exception reaches the user with the record's place.
  testing::write_text(dir.file("tokenizer_config.json"), R"({"chat_template":
      "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}"})");
  const ChatTemplate strict = ChatTemplate::load(dir.path().string());
  testing::write_text(dir.file("t.jsonl"), R"({"messages": [{"role": "assistant", "content": "x"}]})");
  const std::string message = testing::error_message_of(
      [&] { for_each_text({dir.file("t.jsonl")}, "messages", [](const std::string&) {}, &strict); });
  EXPECT_NE(message.find("t.jsonl:1: "), std::string::npos) << message;
  EXPECT_NE(message.find("first must be user"), std::string::npos) << message;
}

TEST(ChatTemplate, SyntaxOutsideTheSubsetIsRefusedWithItsLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a\n{% for x in y %}", "missing {% endfor %}"},
      {"a\nb\n{% include 'x' %}", "line 3: {% include %} is not supported"},
      {"{{ x | wordwrap }}", "filter \"wordwrap\" is not supported"},
      {"{{ 'a' ", "never closed"},
      {"{{ 1 + }}", "line 1"},
      {"{{ 1 == < 2 }}", "unexpected '<'"}};
  for (const auto& [source, words] : cases) {
    const std::string message =
        testing::error_message_of([&] { JinjaTemplate(source, "t").render(OrderedJson::object()); });
    EXPECT_NE(message.find(words), std::string::npos) << source << " -> " << message;
  }
}

// Templates come with model folders, so a hostile or broken one must end in an Error, never in a hang, a crash
// or a wrapped number.
TEST(ChatTemplate, RunawayTemplatesStopWithAnError) {
  const std::string deep_brackets = "{{ " + std::string(300, '[') + std::string(300, ']') + " }}";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{{ 9223372036854775807 + 1 }}", "integer overflow"},
      {"{{ 2 ** 64 }}", "integer overflow"},
      {"{% set m = -9223372036854775807 - 1 %}{{ m // -1 }}", "integer overflow"},
      {"{% for i in range(1000000) %}{% endfor %}", "range() of more than 100000 items"},
      {"{{ 'ab' * 100000000 }}", "repeated past"},
      {"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "macros nested deeper than 64"},
      {deep_brackets, "nested deeper than 200"},
      {"{{ 1e300 | int }}", "beyond 64 bits"}};
  for (const auto& [source, words] : cases) {
    const std::string message =
        testing::error_message_of([&] { JinjaTemplate(source, "t").render(OrderedJson::object()); });
    EXPECT_NE(message.find(words), std::string::npos) << source.substr(0, 60) << " -> " << message;
  }
  EXPECT_EQ(JinjaTemplate("{{ 2 ** 62 }} {{ 'abc'[1::9223372036854775807] }}", "t").render(OrderedJson::object()),
            "4611686018427387904 b");
  const std::string deep_list = std::string(150, '[') + std::string(150, ']');
  EXPECT_NE(testing::error_message_of([&] { parse_python_literal(deep_list); }).find("nested deeper than 100"),
            std::string::npos);
}

}  // namespace
}  // namespace autotrain
