require "paas_greeting"

# A Rack app: every path answers JSON; its requests go to the app's log.
run lambda { |env|
  $stdout.puts "#{env["REQUEST_METHOD"]} #{env["PATH_INFO"]}"
  [200, { "content-type" => "application/json" }, [PaasGreeting.for(env["PATH_INFO"])]]
}
