# The source of vendor/cache/paas_greeting-1.0.0.gem: a gem of this example's own,
# vendored as `bundle cache` would, so that staging installs it offline. Rebuild it
# with `gem build paas_greeting.gemspec` in this folder.
Gem::Specification.new do |s|
  s.name = "paas_greeting"
  s.version = "1.0.0"
  s.summary = "Says which paas app answers"
  s.authors = ["paas"]
  s.license = "MIT"
  s.files = ["lib/paas_greeting.rb"]
end
