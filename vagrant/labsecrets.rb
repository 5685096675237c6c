# The VM lab's credentials, made on the host when the Vagrantfile loads (the namespace lab's
# twin: pyctl/lab/secrets.py): the relay's operator token, each transceiver's backend token
# (derived as steer_common/credentials.py does) and a self-signed pair for the relay's TLS API.
# They live in vagrant/.lab/ (mode 0600, git-ignored) and reach every VM with the synced
# folder as /steer/vagrant/.lab/.
require "fileutils"
require "openssl"
require "securerandom"

module LabSecrets
  DIR = File.join(__dir__, ".lab")
  GUEST_DIR = "/steer/vagrant/.lab"

  def self.write(name, text)
    File.open(File.join(DIR, name), File::WRONLY | File::CREAT | File::TRUNC, 0o600) { |f| f.write(text) }
  end

  def self.backend_token(operator, id)
    key = OpenSSL::Digest::SHA256.digest("steer backend tokens\0" + operator)
    "b#{id}." + OpenSSL::HMAC.hexdigest("SHA256", key, "backend #{id}")[0, 40]
  end

  def self.self_signed(ip)
    key = OpenSSL::PKey::EC.generate("prime256v1")
    name = OpenSSL::X509::Name.parse("/CN=steer lab #{ip}")
    crt = OpenSSL::X509::Certificate.new
    crt.version, crt.serial = 2, SecureRandom.random_number(2**64)
    crt.subject = crt.issuer = name
    crt.public_key = key
    crt.not_before, crt.not_after = Time.now - 300, Time.now + 30 * 86_400
    ext = OpenSSL::X509::ExtensionFactory.new(crt, crt)
    crt.add_extension(ext.create_extension("subjectAltName", "IP:#{ip}", false))
    crt.add_extension(ext.create_extension("basicConstraints", "CA:TRUE", true))
    crt.sign(key, OpenSSL::Digest::SHA256.new)
    write("api.key", key.private_to_pem)
    write("api.crt", crt.to_pem)
  end

  # Make what is missing; returns the guest paths.
  def self.ensure(transceivers, api_ip)
    FileUtils.mkdir_p(DIR, mode: 0o700)
    token_file = File.join(DIR, "operator.token")
    write("operator.token", SecureRandom.urlsafe_base64(32) + "\n") unless File.exist?(token_file)
    operator = File.read(token_file).strip
    (1..transceivers).each { |i| write("backend#{i}.token", backend_token(operator, i) + "\n") }
    self_signed(api_ip) unless File.exist?(File.join(DIR, "api.crt"))
    GUEST_DIR
  end
end
