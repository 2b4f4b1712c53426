require "json"

# What the example app answers: its name (from VCAP_APPLICATION), the instance that
# answers, and the path asked for.
module PaasGreeting
  def self.for(path)
    app = JSON.parse(ENV.fetch("VCAP_APPLICATION", "{}"))["application_name"]
    index = ENV.fetch("CF_INSTANCE_INDEX", "0").to_i
    JSON.generate(app: app, instance_index: index, language: "ruby", ruby: RUBY_VERSION, path: path)
  end
end
